"""Processes under test, each in its own OS process on 127.0.0.1: the fake LLM and `botline serve`.

Both are started with `subprocess.Popen`, waited for over HTTP, and stopped (SIGTERM, then SIGKILL
after a grace period) by the context managers, whatever happens in between.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOTLINE = Path(sys.executable).with_name("botline")
BENCH_KEY = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz"
"""The fixed admin key of the benchmark's botline (a throwaway store in a temp dir)."""
GATEWAY_SLUG = "bench"
UPSTREAM_MODEL = "fake-model"
START_TIMEOUT = 60.0
STOP_GRACE = 10.0


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(server: Server, lines: int = 15) -> str:
    try:
        text = server.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(["", f"--- last lines of {server.name}'s output ---", *text])


def _wait_http(server: Server, path: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    url = server.base_url + path
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}" + _log_tail(server))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer {url} within {START_TIMEOUT:.0f} s" + _log_tail(server))


def _stop(server: Server) -> None:
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextlib.contextmanager
def _spawn(name: str, argv: list[str], port: int, workdir: Path,
           env: dict[str, str] | None = None) -> Iterator[Server]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    server = Server(name=name, process=process, port=port, log_path=log_path)
    try:
        yield server
    finally:
        _stop(server)


@contextlib.contextmanager
def fake_llm(workdir: Path) -> Iterator[Server]:
    """The zero-latency fake OpenAI-compatible upstream (echoes the last user message)."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.emulators.fake_llm", "--host", "127.0.0.1", "--port", str(port)]
    with _spawn("fake_llm", argv, port, workdir) as server:
        _wait_http(server, "/v1/models")
        yield server


def botline_config(workdir: Path, port: int, upstream: Server, name: str = "botline") -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(
        "server:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "storage:\n"
        f"  url: sqlite:///{workdir / (name + '.db')}\n"
        "auth:\n"
        f"  admin_keys: [{BENCH_KEY}]\n"
        "logging:\n"
        "  level: WARNING\n"
        "gateways:\n"
        f"  - name: {GATEWAY_SLUG}\n"
        "    parameters:\n"
        f"      baseAddress: {upstream.base_url}/v1\n"
        f"      modelName: {UPSTREAM_MODEL}\n"
    )
    return path


def botline_command(levers: str | None = None) -> list[str]:
    """The command that starts botline: the venv's `botline`; `python -m bench.levers` when what-if
    `levers` are given; or $BENCH_BOTLINE_CMD (e.g. another checkout's build) for the default one."""
    if levers:
        return [sys.executable, "-m", "bench.levers"]
    override = os.environ.get("BENCH_BOTLINE_CMD")
    return shlex.split(override) if override else [str(BOTLINE)]


@contextlib.contextmanager
def botline(workdir: Path, upstream: Server, *, name: str = "botline", levers: str | None = None) -> Iterator[Server]:
    """`botline serve` on a throwaway SQLite store with one gateway (slug `bench`) to `upstream`.

    `levers`: comma-separated what-if patches from bench.levers (None: the real botline)."""
    port = free_port()
    config = botline_config(workdir, port, upstream, name)
    argv = [*botline_command(levers), "serve", "--config", str(config)]
    env = {"BENCH_LEVERS": levers} if levers else None
    with _spawn(name, argv, port, workdir, env) as server:
        _wait_http(server, "/healthz")
        _wait_http(server, "/v1/models", {"Authorization": f"Bearer {BENCH_KEY}"})
        yield server


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)
