"""The embedded local model (all-MiniLM-L6-v2 on onnxruntime): the vectors of the reference implementation,
loaded from the installed package with no network, similar texts close and unrelated ones apart.

The reference is tests/knowledge/minilm_reference.py: an independent pure-Python WordPiece tokenizer and
float64 numpy BERT forward over the same package's weights, written from the published architecture.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from botline.knowledge.local_embeddings import DIMENSIONS, LocalEmbedder, archive_path
from tests.knowledge.minilm_reference import ReferenceMiniLm

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog.",
    "Qual é o horário de atendimento da loja?",
    "Refunds are accepted within 30 days of purchase, with the receipt.",
]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    """One per module: the model loads (about a second) on the first embed."""
    return LocalEmbedder(batch_size=4, threads=1)


async def test_vectors_equal_the_reference_implementation(embedder: LocalEmbedder) -> None:
    reference = ReferenceMiniLm(archive_path())
    embedded = await embedder.embed(SENTENCES)  # batched with padding: the mask must hide it
    assert embedded.vectors.shape == (len(SENTENCES), DIMENSIONS)
    for text, vector in zip(SENTENCES, embedded.vectors, strict=True):
        np.testing.assert_allclose(vector, reference.encode(text), atol=1e-4, err_msg=text)
    assert embedded.tokens == sum(len(reference.ids(t)) for t in SENTENCES)


async def test_one_text_alone_or_in_a_batch_gives_the_same_vector(embedder: LocalEmbedder) -> None:
    alone = (await embedder.embed([SENTENCES[0]])).vectors[0]
    batched = (await embedder.embed([*SENTENCES, "x " * 300])).vectors[0]  # the long text is cut at 256 pieces
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    assert abs(float(np.linalg.norm(alone)) - 1.0) < 1e-5


async def test_texts_split_into_runs_in_parallel_come_back_in_order(embedder: LocalEmbedder) -> None:
    """Many texts of mixed lengths (several runs, executed at once on two threads, a run cut both by
    texts and by padded word pieces): each vector is the one of its text embedded alone."""
    texts = [" ".join(["refund"] * n) + f" {i}" for i, n in enumerate([300, 3, 40, 1, 120, 7, 250, 2, 60, 15])]
    parallel = LocalEmbedder(batch_size=3, threads=2)
    embedded = await parallel.embed(texts)
    alone = [(await embedder.embed([text])) for text in texts]
    for text, vector, single in zip(texts, embedded.vectors, alone, strict=True):
        np.testing.assert_allclose(vector, single.vectors[0], atol=1e-5, err_msg=text)
    assert embedded.tokens == sum(single.tokens for single in alone)
    await parallel.close()


async def test_similar_texts_are_close_and_unrelated_ones_apart(embedder: LocalEmbedder) -> None:
    # langchain4j's all-MiniLM-L6-v2 test expects cosine("hi", "hello") > 0.8.
    hi, hello, car, automobile, invoice = (await embedder.embed(
        ["hi", "hello", "How do I change a car tyre?", "Replacing the wheel of an automobile",
         "Invoice payment terms"])).vectors
    assert float(hi @ hello) > 0.8
    assert float(car @ automobile) > float(car @ invoice) + 0.2


def test_the_model_loads_and_runs_with_no_network() -> None:
    """In a fresh interpreter that refuses every socket connection and DNS lookup."""
    script = textwrap.dedent("""
        import asyncio, sys
        def refuse(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
                raise RuntimeError(f"network used: {event}")
        sys.addaudithook(refuse)
        from botline.knowledge.local_embeddings import LocalEmbedder
        async def main():
            embedder = LocalEmbedder(batch_size=2, threads=1)
            vectors = (await embedder.embed(["offline", "sem rede"])).vectors
            await embedder.close()
            print(vectors.shape)
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"(2, {DIMENSIONS})"


async def test_the_quantized_model_stays_close_to_the_exact_one(embedder: LocalEmbedder) -> None:
    """`quantized: true` (int8 weights) is another model id (switching re-embeds) whose vectors point
    nearly the same way and keep the same neighbours."""
    quantized = LocalEmbedder(batch_size=4, threads=1, quantized=True)
    assert quantized.model_id != embedder.model_id
    exact, approximate = (await embedder.embed(SENTENCES)).vectors, (await quantized.embed(SENTENCES)).vectors
    assert float((exact * approximate).sum(axis=1).min()) > 0.97
    similar = (approximate @ approximate.T).argsort(axis=1)[:, -2]
    assert list(similar) == list((exact @ exact.T).argsort(axis=1)[:, -2])
    await quantized.close()
