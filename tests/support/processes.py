"""`botline serve` as a real child process: the same command a user runs, killable for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

START_TIMEOUT = 45.0
"""A hang guard: a start takes 2-3 s on a quiet machine and several times that on a loaded CI machine."""
STOP_TIMEOUT = 40.0


@dataclass(frozen=True)
class BotlineProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def botline_process(
    config: Path, port: int | None = None, *, log_file: Path | None = None
) -> AsyncIterator[BotlineProcess]:
    """Starts `botline serve --config config` on `port` (a free one by default) and waits until it serves.
    Its log (stderr) goes to `log_file` when given.

    On exit the process gets SIGTERM (a graceful stop) unless the test already stopped or killed it.
    """
    port = port or free_port()
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log_file.open("wb")) if log_file is not None else asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "botline.cli", "serve", "--config", str(config), "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env={**os.environ},
        )
    assert process.stdout is not None
    try:
        while b"serving on" not in await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT):
            assert process.returncode is None, "botline exited during start-up"
        yield BotlineProcess(process, port)
    finally:
        await stop_process(process)


async def stop_process(process: asyncio.subprocess.Process, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout`; nothing if it already exited."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
