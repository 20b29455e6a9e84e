"""Outbound delivery: splitting answers into messages a channel accepts, and sending them with retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.integrations import Integration
from botline.egress import Trust

log = logging.getLogger(__name__)

FENCE = re.compile(r"^\s*(```|~~~)")
"""A line that opens or closes a fenced code block (matched at a line's start: linear time)."""
MIN_LIMIT = 16
"""The smallest message limit accepted: a re-fenced part then always has room for a character."""
PARAGRAPH_BREAK = "\n\n"
MAX_ATTEMPTS = 5
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0

Length = Callable[[str], int]
"""How a channel counts a message's length. It must be additive (the length of a concatenation is
the sum of the lengths) and count each character at least 1, as characters and UTF-16 units do."""


def utf16_length(text: str) -> int:
    """How Telegram counts message length."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Part:
    """One piece of an answer as sent. `body` is the answer's own text; `head` and `tail` are fence
    lines the splitter added so that a code block cut across messages renders as code in each part
    ("" when none was added)."""

    body: str
    head: str = ""
    tail: str = ""

    def render(self) -> str:
        return "\n".join(line for line in (self.head, self.body, self.tail) if line)


@dataclass(frozen=True)
class _Fence:
    """The code block a cut falls in: its opening line, repeated atop each later part, and the
    marker that closes each earlier part."""

    opener: str
    closer: str


def _blocks(text: str) -> list[str]:
    """Paragraphs (blank-line separated), keeping each fenced code block whole."""
    blocks: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if FENCE.match(line):
            in_code = not in_code
        if not line.strip() and not in_code:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


class _Cutter:
    """Cuts one over-long block into parts of at most `limit`: whole lines while they fit, a line
    alone only when it does not fit in an empty part. Inside a code block each part is closed and
    the next reopened with the block's fences, unless those would take more than half the limit
    (a fence line thousands of characters long): then the parts go out unfenced.

    Every step either closes a part holding at least one line or cuts at least one character off
    the line, so the cut ends for every input."""

    def __init__(self, limit: int, length: Length) -> None:
        self._limit = limit
        self._length = length
        self.parts: list[Part] = []
        self._in_code = False
        self._fence: _Fence | None = None
        """The code block being cut when it is re-fenced; None outside code or when unfenced."""
        self._head = ""
        self._lines: list[str] = []
        self._used = 0
        """The length of the head and lines so far, joined by newlines."""

    def add(self, line: str) -> None:
        in_code, fence = self._after(line)
        while not self._fits(line, fence):
            if self._lines:
                self._close_part()
                continue
            room = self._limit - self._used - self._separator() - self._tail_cost(self._fence)
            cut = self._longest_prefix(line, room)
            self._lines.append(line[:cut])
            self._close_part()
            line = line[cut:]
        self._used += self._separator() + self._length(line)
        self._lines.append(line)
        self._in_code, self._fence = in_code, fence

    def finish(self) -> list[Part]:
        self._close_part()
        return self.parts

    def _after(self, line: str) -> tuple[bool, _Fence | None]:
        """Whether the cut is in code after `line`, and the fence to repeat then."""
        match = FENCE.match(line)
        if match is None:
            return self._in_code, self._fence
        if self._in_code:
            return False, None
        fence = _Fence(line, match.group(1))
        fits_twice = self._length(fence.opener) + self._length(fence.closer) + 2 <= self._limit // 2
        return True, fence if fits_twice else None

    def _separator(self) -> int:
        return 1 if self._head or self._lines else 0

    def _tail_cost(self, fence: _Fence | None) -> int:
        return 1 + self._length(fence.closer) if fence else 0

    def _fits(self, line: str, fence: _Fence | None) -> bool:
        return self._used + self._separator() + self._length(line) + self._tail_cost(fence) <= self._limit

    def _longest_prefix(self, line: str, room: int) -> int:
        """The most characters of `line` within `room` (binary search), at least one."""
        low, high = 1, max(1, min(len(line), room))
        while low < high:
            middle = (low + high + 1) // 2
            if self._length(line[:middle]) <= room:
                low = middle
            else:
                high = middle - 1
        return low

    def _close_part(self) -> None:
        body = "\n".join(self._lines)
        if body.strip():
            self.parts.append(Part(body, head=self._head, tail=self._fence.closer if self._fence else ""))
        self._head = self._fence.opener if self._fence else ""
        self._lines = []
        self._used = self._length(self._head)


def _cut(block: str, limit: int, length: Length) -> list[Part]:
    cutter = _Cutter(limit, length)
    for line in block.split("\n"):
        cutter.add(line)
    return cutter.finish()


def split_parts(text: str, *, limit: int, by_paragraph: bool, length: Length = len) -> list[list[Part]]:
    """The messages for one answer, each as its parts (sent joined by a blank line); see split_message."""
    if limit < MIN_LIMIT:
        raise ValueError(f"a message limit must be at least {MIN_LIMIT}")
    messages: list[list[Part]] = []
    current: list[Part] = []
    used = 0
    for block in _blocks(text.strip()):
        parts = [Part(block)] if length(block) <= limit else _cut(block, limit, length)
        for part in parts:
            if by_paragraph:
                messages.append([part])
                continue
            size = length(part.render())
            if current and used + length(PARAGRAPH_BREAK) + size > limit:
                messages.append(current)
                current, used = [], 0
            used += (length(PARAGRAPH_BREAK) if current else 0) + size
            current.append(part)
    if current:
        messages.append(current)
    return messages


def split_message(text: str, *, limit: int, by_paragraph: bool, length: Length = len) -> list[str]:
    """The messages to send for one answer, in order, each at most `limit` as `length` counts.

    Cut at paragraph breaks (then line breaks, then characters); never inside a code block unless
    the block alone is over the limit (then each part is fenced again, when the fence is short
    enough to repeat). With `by_paragraph` every paragraph is a message of its own."""
    return [PARAGRAPH_BREAK.join(part.render() for part in message)
            for message in split_parts(text, limit=limit, by_paragraph=by_paragraph, length=length)]


Sleep = Callable[[float], Awaitable[None]]


async def send_with_retries(
    adapter: ChannelAdapter[Integration], integration: Integration, chat_id: str, text: str, *,
    trust: Trust = Trust.TENANT, sleep: Sleep = asyncio.sleep, attempts: int = MAX_ATTEMPTS,
    on_retry: Callable[[], object] | None = None,
) -> None:
    """Sends one message; retries 429/5xx/connection failures with backoff (Retry-After honoured).
    `on_retry` is told of each retry (metrics)."""
    await with_retries(adapter.kind.value, lambda: adapter.send_text(integration, chat_id, text, trust=trust),
                       sleep=sleep, attempts=attempts, on_retry=on_retry)


async def with_retries(
    provider: str, send: Callable[[], Awaitable[None]], *, sleep: Sleep = asyncio.sleep,
    attempts: int = MAX_ATTEMPTS, on_retry: Callable[[], object] | None = None,
) -> None:
    """Runs one send (text, voice note...) with send_with_retries' policy."""
    for attempt in range(1, attempts + 1):
        try:
            await send()
            return
        except DeliveryError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            backoff = min(FIRST_DELAY_SECONDS * 2 ** (attempt - 1), MAX_DELAY_SECONDS) * (1 - 0.25 * random.random())
            delay = min(exc.retry_after, MAX_DELAY_SECONDS) if exc.retry_after else backoff
            log.info("%s send failed (%s); retry %d in %.1f s", provider, exc.message, attempt, delay)
            if on_retry is not None:
                on_retry()
            await sleep(delay)
