"""An independent all-MiniLM-L6-v2 sentence encoder, the reference the local embedder is checked against.

Written from the published architecture (BERT, as transformers' `BertModel` computes it, then
sentence-transformers' mean pooling and `Normalize`), not from botline's code: a pure-Python BERT
WordPiece tokenizer over the vocabulary in the package's tokenizer.json (lower case, accents stripped,
punctuation split, greedy longest-match word pieces, [CLS] ... [SEP], at most 256 pieces) and a plain
numpy forward pass in float64 over the package's safetensors weights (read with numpy, one text at a
time, so no padding or attention mask is involved). Slow (a fraction of a second per sentence) and only
for tests.
"""

from __future__ import annotations

import json
import struct
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_PIECES = 256
Array = npt.NDArray[np.float64]


def _weights(archive: Path) -> tuple[dict[str, Array], dict[str, Any], dict[str, int]]:
    with zipfile.ZipFile(archive) as files:
        data = files.read("model.safetensors")
        config = json.loads(files.read("config.json"))
        vocab = json.loads(files.read("tokenizer.json"))["model"]["vocab"]
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    tensors = {}
    for name, info in header.items():
        if name != "__metadata__" and info["dtype"] == "F32":
            start, end = info["data_offsets"]
            raw = np.frombuffer(data[8 + length + start:8 + length + end], dtype="<f4")
            tensors[name] = raw.reshape(info["shape"]).astype(np.float64)
    return tensors, config, vocab


def _basic_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens: list[str] = []
    word = ""
    for char in text:
        if char.isspace():
            tokens += [word] if word else []
            word = ""
        elif unicodedata.category(char).startswith("P") or (char.isascii() and not char.isalnum()):
            tokens += ([word] if word else []) + [char]
            word = ""
        else:
            word += char
    return tokens + ([word] if word else [])


def _word_pieces(word: str, vocab: dict[str, int]) -> list[int]:
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                break
            end -= 1
        else:
            return [vocab["[UNK]"]]
        start = end
    return pieces


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x: Array) -> Array:
    from math import erf
    return np.vectorize(erf)(x)


class ReferenceMiniLm:
    def __init__(self, archive: Path) -> None:
        self.w, self.config, self.vocab = _weights(archive)

    def ids(self, text: str) -> list[int]:
        pieces = [p for word in _basic_tokens(text) for p in _word_pieces(word, self.vocab)]
        return [self.vocab["[CLS]"], *pieces[:MAX_PIECES - 2], self.vocab["[SEP]"]]

    def encode(self, text: str) -> Array:
        w, eps = self.w, float(self.config["layer_norm_eps"])
        heads = int(self.config["num_attention_heads"])
        ids = self.ids(text)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        size = x.shape[1] // heads

        def dense(h: Array, name: str) -> Array:
            return h @ w[f"{name}.weight"].T + w[f"{name}.bias"]

        for n in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{n}"
            q, k, v = (dense(x, f"{p}.attention.self.{m}").reshape(len(ids), heads, size).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(size)
            probabilities = np.exp(scores - scores.max(-1, keepdims=True))
            probabilities /= probabilities.sum(-1, keepdims=True)
            context = (probabilities @ v).transpose(1, 0, 2).reshape(len(ids), heads * size)
            x = _layer_norm(dense(context, f"{p}.attention.output.dense") + x,
                            w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"], eps)
            h = dense(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1 + _erf(h / np.sqrt(2)))
            x = _layer_norm(dense(h, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                            w[f"{p}.output.LayerNorm.bias"], eps)
        mean = x.mean(0)
        return mean / np.linalg.norm(mean)
