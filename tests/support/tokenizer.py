"""A real tiktoken encoder that needs no download: every byte is one token.

This machine cannot fetch OpenAI's BPE files, so botline counts tokens as chars/4 here. Tests that
need exact (and realistically slow: about 0.1 s per MB) counting install this encoder under the name
botline asks tiktoken for; its counts are easy to predict (UTF-8 bytes plus overhead).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tiktoken
import tiktoken.registry

from botline.gateway.tokens import DEFAULT_ENCODING

WORDS = "|".join([
    r"""[^\r\n\p{L}\p{N}]?\p{L}+""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


def byte_encoding() -> tiktoken.Encoding:
    return tiktoken.Encoding("bytes", pat_str=WORDS, mergeable_ranks={bytes([b]): b for b in range(256)},
                             special_tokens={})


@pytest.fixture
def exact_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[tiktoken.Encoding]:
    """Makes tiktoken hand out the byte encoder for botline's default encoding (models it does not know)."""
    encoding = byte_encoding()
    monkeypatch.setitem(tiktoken.registry.ENCODINGS, DEFAULT_ENCODING, encoding)
    yield encoding
