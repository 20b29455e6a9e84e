"""JSON log lines (one per event) carrying the request and turn context from contextvars.

A turn sets its context (`bind_turn`) in the task that runs it, or before creating that task: asyncio
copies contextvars into a task when it is created, so every line logged during the turn (pipeline,
tools, delivery, errors) carries them, and nothing leaks into other tasks.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
current_session: ContextVar[str | None] = ContextVar("current_session", default=None)
current_channel: ContextVar[str | None] = ContextVar("current_channel", default=None)
current_gateway: ContextVar[str | None] = ContextVar("current_gateway", default=None)
_CONTEXT = (("requestId", request_id), ("sessionId", current_session), ("channel", current_channel),
            ("gateway", current_gateway))

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "requestId", "sessionId", "channel", "gateway", ...extra}`
    on one line (context fields only when set)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, variable in _CONTEXT:
            if (current := variable.get()) is not None:
                entry[name] = current
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def bind_turn(channel: str, *, session_id: str | None = None, gateway: str | None = None) -> None:
    """Names the turn the current task works on in every log line it emits from here on."""
    current_channel.set(channel)
    if session_id is not None:
        current_session.set(session_id)
    if gateway is not None:
        current_gateway.set(gateway)


def loggable_url(url: str) -> str:
    """`url` without what often carries a secret (user:password@, the query, the fragment)."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + ("?…" if parts.query else "")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "httpx", "httpx2", "openai", "apscheduler", "telegram"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
