"""The worker process's side: read a job, run it, send the outcome back; until the socket closes.

A job is a pickled `(function, args)` pair; the function must be importable by name (a module-level
function). Frames on the socket are an 8-byte big-endian length followed by a pickle.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import socket
import struct
from collections.abc import Callable
from typing import Any

from botline.parsing.errors import JobRejected

HEADER = struct.Struct("!Q")
OK, REJECTED, FAILED = "ok", "rejected", "failed"
MAX_FAILURE_CHARS = 500
NICENESS = 10
"""Workers yield the CPU to the server's event loop on a busy machine."""


def serve(sock: socket.socket, memory_limit_bytes: int) -> None:
    """The worker's main loop (the target of its Process). `memory_limit_bytes` 0 means no limit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server: the parent shuts the workers down
    os.nice(NICENESS)
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    with sock:
        while (frame := _read_frame(sock)) is not None:
            function, args = pickle.loads(frame)
            _write_frame(sock, pickle.dumps(_run(function, args), protocol=pickle.HIGHEST_PROTOCOL))


def _run(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return OK, function(*args)
    except JobRejected as exc:
        return REJECTED, exc.message
    except Exception as exc:  # reported to the parent, which logs it; the worker lives on
        return FAILED, f"{type(exc).__name__}: {exc}"[:MAX_FAILURE_CHARS]


def _read_frame(sock: socket.socket) -> bytes | None:
    header = _read_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(min(size - len(buffer), 1 << 20))
        if not chunk:
            return None  # the pool closed its end: exit
        buffer += chunk
    return bytes(buffer)


def _write_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(HEADER.pack(len(body)) + body)
