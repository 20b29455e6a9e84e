"""Outbound delivery: splitting answers into messages a channel accepts, and sending them with retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable

from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.integrations import Integration
from botline.egress import Trust

log = logging.getLogger(__name__)

FENCE = re.compile(r"^\s*(```|~~~)")
MAX_ATTEMPTS = 5
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0


def utf16_length(text: str) -> int:
    """How Telegram counts message length."""
    return len(text.encode("utf-16-le")) // 2


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


def _hard_split(block: str, limit: int, length: Callable[[str], int]) -> list[str]:
    """Splits one over-long block at line (else character) boundaries; a code block stays fenced."""
    fence = FENCE.match(block)
    opener = block.split("\n", 1)[0] if fence else ""
    closer = fence.group(1) if fence else ""
    body = block[len(opener) + 1:].rsplit("\n", 1)[0] if fence else block
    room = limit - (length(opener) + length(closer) + 2 if fence else 0)
    pieces, current = [], ""
    for line in body.split("\n"):
        while length(line) > room:
            cut = room
            while length(line[:cut]) > room:
                cut -= 1
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if length(candidate) > room and current:
            pieces.append(current)
            candidate = line
        current = candidate
    if current:
        pieces.append(current)
    return [f"{opener}\n{piece}\n{closer}" for piece in pieces] if fence else pieces


def split_message(
    text: str, *, limit: int, by_paragraph: bool, length: Callable[[str], int] = len
) -> list[str]:
    """The messages to send for one answer, in order; never splits inside a code block unless the
    block alone is over the limit (then each part is fenced again)."""
    blocks = _blocks(text.strip())
    messages: list[str] = []
    current = ""
    for block in blocks:
        parts = [block] if length(block) <= limit else _hard_split(block, limit, length)
        for part in parts:
            if by_paragraph:
                messages.append(part)
                continue
            candidate = f"{current}\n\n{part}" if current else part
            if length(candidate) > limit:
                messages.append(current)
                candidate = part
            current = candidate
    if current:
        messages.append(current)
    return [m for m in messages if m.strip()]


Sleep = Callable[[float], Awaitable[None]]


async def send_with_retries(
    adapter: ChannelAdapter[Integration], integration: Integration, chat_id: str, text: str, *,
    trust: Trust = Trust.TENANT, sleep: Sleep = asyncio.sleep, attempts: int = MAX_ATTEMPTS,
    on_retry: Callable[[], object] | None = None,
) -> None:
    """Sends one message; retries 429/5xx/connection failures with backoff (Retry-After honoured).
    `on_retry` is told of each retry (metrics)."""
    for attempt in range(1, attempts + 1):
        try:
            await adapter.send_text(integration, chat_id, text, trust=trust)
            return
        except DeliveryError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            backoff = min(FIRST_DELAY_SECONDS * 2 ** (attempt - 1), MAX_DELAY_SECONDS) * (1 - 0.25 * random.random())
            delay = min(exc.retry_after, MAX_DELAY_SECONDS) if exc.retry_after else backoff
            log.info("%s send failed (%s); retry %d in %.1f s", adapter.kind.value, exc.message, attempt, delay)
            if on_retry is not None:
                on_retry()
            await sleep(delay)
