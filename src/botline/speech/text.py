"""Markdown answers made speakable: what a listener should hear instead of what a reader sees.

Code blocks and tables are left out (they stay in the text answer, which is always delivered or shown
beside the audio), a link is spoken as its label, a bare URL as its host name, and markup characters
are dropped. Line by line with linear patterns on a capped input (docs/decisions.md, "Regexes on
hostile input"): the answer comes from a model that may repeat anything a user wrote.
"""

from __future__ import annotations

import re

FENCE = re.compile(r"^\s*(```|~~~)")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
IMAGE = re.compile(r"!\[([^\]\n]{0,300})\]\([^)\s]{0,2000}\)")
LINK = re.compile(r"\[([^\]\n]{0,300})\]\([^)\s]{0,2000}\)")
URL = re.compile(r"\b(?:https?|ftp)://([^/\s:?#]{1,253})[^\s)]{0,4000}")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+")
EMPHASIS = re.compile(r"[*_~`]{1,3}")
SPACES = re.compile(r"[ \t]{2,}")
SENTENCE_END = re.compile(r"[.!?…](?=\s)")
INPUT_FACTOR = 8
"""The spoken text is at most max_input_chars; the markdown read for it at most this many times that."""

SUMMARY_PROMPT = (
    "Rewrite the assistant's answer below so that it can be read aloud by a speech synthesizer. "
    "Keep the answer's language. Keep it short: at most {words} words, the essential points only. "
    "Never read code, tables, URLs, file paths or long numbers verbatim: say in a few words what they "
    "are and that they are in the written answer. Plain sentences only: no markdown, no lists, no emoji. "
    "Reply with the text to speak and nothing else."
)


def spoken_text(markdown: str, *, max_chars: int) -> str:
    """The text to synthesise for an answer, at most `max_chars` (cut after a sentence when possible)."""
    lines: list[str] = []
    in_code = False
    for line in markdown[: max_chars * INPUT_FACTOR].split("\n"):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code or TABLE_ROW.match(line):
            continue
        line = IMAGE.sub("", line)
        line = LINK.sub(r"\1", line)
        line = URL.sub(r"\1", line)
        line = HEADING.sub("", line)
        line = BULLET.sub("", line)
        line = EMPHASIS.sub("", line)
        line = SPACES.sub(" ", line).strip()
        if line:
            lines.append(line if line[-1] in ".!?:;,…" else f"{line}.")
    return cut_at_sentence(" ".join(lines), max_chars)


def cut_at_sentence(text: str, limit: int) -> str:
    """`text` if it fits, else its longest prefix within `limit` that ends a sentence (or a word)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in SENTENCE_END.finditer(head + " ")]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]].strip()
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).strip()
