"""Processes under test, each in its own OS process on 127.0.0.1: the fake LLM and `botline serve`.

Both are started with `subprocess.Popen`, waited for over HTTP, and stopped (SIGTERM, then SIGKILL
after a grace period) by the context managers, whatever happens in between.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def save_result(name: str, raw: dict[str, Any]) -> Path:
    """Writes one benchmark's raw result to bench/results/<name>-<timestamp>.json (git-ignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(raw, indent=2, default=str))
    print(f"raw results: {path.relative_to(ROOT)}")
    return path
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


def log_lines(server: Server, lines: int = 20) -> list[str]:
    """The last `lines` lines of a server's output (stdout and stderr)."""
    try:
        return server.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _log_tail(server: Server, lines: int = 15) -> str:
    try:
        text = server.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(["", f"--- last lines of {server.name}'s output ---", *text])


def wait_http(server: Server, path: str, headers: dict[str, str] | None = None) -> None:
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


def raise_nofile(limit: int) -> int:
    """Raises this process's open-files limit (soft and, as root, hard) to `limit`; returns the new soft limit.

    Children started afterwards inherit it (`ulimit -n` is per process and inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _nofile_preexec(limit: int | None) -> Callable[[], None] | None:
    if limit is None:
        return None

    def preexec() -> None:  # runs in the child between fork and exec
        raise_nofile(limit)

    return preexec


@contextlib.contextmanager
def spawn(name: str, argv: list[str], port: int, workdir: Path,
           env: dict[str, str] | None = None, nofile: int | None = None) -> Iterator[Server]:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=_nofile_preexec(nofile),
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
    with spawn("fake_llm", argv, port, workdir) as server:
        wait_http(server, "/v1/models")
        yield server


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def botline_config(workdir: Path, port: int, upstream: Server, name: str = "botline",
                   overrides: dict[str, Any] | None = None) -> Path:
    """The temp YAML: SQLite in `workdir`, the fixed admin key, WARNING logs, gateway `bench` -> `upstream`.

    `overrides` is deep-merged on top (e.g. {"storage": {"url": "redis://..."}})."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {"url": f"sqlite:///{workdir / (name + '.db')}"},
        "auth": {"admin_keys": [BENCH_KEY]},
        "logging": {"level": "WARNING"},
        "gateways": [{"name": GATEWAY_SLUG, "parameters": {
            "baseAddress": f"{upstream.base_url}/v1", "modelName": UPSTREAM_MODEL}}],
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_merge(config, overrides or {}), sort_keys=False))
    return path


def sqlite_path(config: Path) -> Path:
    """The SQLite file a config written by `botline_config` points at."""
    url = yaml.safe_load(config.read_text())["storage"]["url"]
    return Path(url.removeprefix("sqlite:///"))


def botline_command(levers: str | None = None) -> list[str]:
    """The command that starts botline: the venv's `botline`; `python -m bench.levers` when what-if
    `levers` are given; or $BENCH_BOTLINE_CMD (e.g. another checkout's build) for the default one."""
    if levers:
        return [sys.executable, "-m", "bench.levers"]
    override = os.environ.get("BENCH_BOTLINE_CMD")
    return shlex.split(override) if override else [str(BOTLINE)]


@contextlib.contextmanager
def botline(workdir: Path, upstream: Server, *, name: str = "botline", levers: str | None = None,
            overrides: dict[str, Any] | None = None, nofile: int | None = None,
            port: int | None = None, source: Path | None = None) -> Iterator[Server]:
    """`botline serve` on a throwaway SQLite store with one gateway (slug `bench`) to `upstream`.

    `levers`: comma-separated what-if patches from bench.levers (None: the real botline).
    `overrides`: config deep-merged over the default temp config. `nofile`: the child's open-files limit.
    `source`: a `src` folder to import botline from instead (e.g. an exported older commit), for
    before/after comparisons in one run."""
    port = port or free_port()
    config = botline_config(workdir, port, upstream, name, overrides)
    argv = [*botline_command(levers), "serve", "--config", str(config)]
    env = {"BENCH_LEVERS": levers} if levers else {}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    with spawn(name, argv, port, workdir, env, nofile) as server:
        wait_http(server, "/healthz")
        wait_http(server, "/v1/models", {"Authorization": f"Bearer {BENCH_KEY}"})
        yield server


@contextlib.contextmanager
def module_server(name: str, module: str, args: list[str], workdir: Path, *, ready_path: str,
                  nofile: int | None = None) -> Iterator[Server]:
    """`python -m <module> --port N <args>` (a bench fake), waited for with GET `ready_path`."""
    port = free_port()
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args]
    with spawn(name, argv, port, workdir, nofile=nofile) as server:
        wait_http(server, ready_path)
        yield server


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MiB (VmRSS from /proc/<pid>/status); nan when unreadable."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        import redis
    except ImportError:  # pragma: no cover
        return False
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_prefix(tag: str) -> str:
    """A key prefix nobody else uses: bench-<tag>-<pid>-<time>."""
    return f"botline-bench-{tag}-{os.getpid()}-{int(time.time() * 1000)}"


def redis_cleanup(prefix: str, url: str = REDIS_URL) -> int:
    """Deletes every key under `prefix` (SCAN + DEL, never FLUSHDB); returns how many."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


@contextlib.contextmanager
def redis_storage(tag: str) -> Iterator[dict[str, Any]]:
    """Config overrides for a Redis store under a unique prefix; the prefix's keys are deleted afterwards."""
    prefix = redis_prefix(tag)
    try:
        yield {"storage": {"url": REDIS_URL, "redis_prefix": prefix}}
    finally:
        redis_cleanup(prefix)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)
