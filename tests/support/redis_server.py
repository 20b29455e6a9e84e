"""A Redis for tests: the machine's own on 127.0.0.1:6379 when it answers, else a throwaway one.

Use the session fixture from any conftest with `from tests.support.redis_server import redis_url`
(re-exporting it makes pytest register it), or `redis_server()` directly outside pytest.
Tests sharing one Redis must keep to their own key prefix (see `unique_prefix`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis import asyncio as redis_asyncio
from redis import exceptions as redis_errors

from botline.store.keys import RedisKeys

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 6379
PROBE_TIMEOUT = 0.5
STARTUP_DEADLINE = 10.0
STARTUP_POLL = 0.05
STOP_TIMEOUT = 5.0
SCAN_BATCH = 500


def _url(port: int) -> str:
    return f"redis://{LOCAL_HOST}:{port}/0"


def answers_ping(url: str) -> bool:
    """True when a Redis at `url` replies to PING within PROBE_TIMEOUT."""
    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT)
    try:
        return bool(client.ping())
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_HOST, 0))
        return int(probe.getsockname()[1])


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    # Polls a child process coming up: there is no readiness signal to wait on instead.
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not answers_ping(url):
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {process.returncode} before answering")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer at {url} within {STARTUP_DEADLINE}s")
        time.sleep(STARTUP_POLL)


@contextmanager
def redis_server() -> Iterator[str]:
    """Yields the URL of a reachable Redis; a server started here is stopped on exit.

    Calls `pytest.skip` only when nothing answers locally and no `redis-server` is installed.
    """
    local = _url(LOCAL_PORT)
    if answers_ping(local):
        yield local
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"no Redis answers at {local} and no redis-server binary is installed")
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", LOCAL_HOST, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = _url(port)
        _wait_until_up(process, url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis shared by the whole test session."""
    with redis_server() as url:
        yield url


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests can share one Redis."""
    return f"test-{uuid.uuid4().hex}"


async def delete_prefix(url: str, prefix: str) -> int:
    """Deletes every key under `prefix` (SCAN + DEL, never FLUSHDB); returns how many."""
    client = redis_asyncio.Redis.from_url(url)
    try:
        doomed = [key async for key in client.scan_iter(match=RedisKeys(prefix).pattern(), count=SCAN_BATCH)]
        return int(await client.delete(*doomed)) if doomed else 0
    finally:
        await client.aclose()


class OwnRedis:
    """A redis-server this test owns (never the machine's): a data dir, a free loopback port, AOF with
    `appendfsync always`, so whatever Redis acknowledged survives `kill()` and comes back on `start()`.

    `kill()` is SIGKILL: a crash, an OOM kill or a lost node, the harshest restart; with this AOF
    setting it loses nothing acknowledged, which is what docs/deploy.md asks of a production Redis.
    """

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("no redis-server binary is installed")
        self.port = _free_port()
        self.url = _url(self.port)
        self._command = [binary, "--port", str(self.port), "--bind", LOCAL_HOST, "--dir", str(data_dir),
                         "--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_up(self._process, self.url)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> OwnRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
