"""Shell files and the bash tool: `python -m bench.shell`.

- the bash sandbox's round trip (`echo hi`, sandbox start included), p50 and p95 over N runs;
- the same round trip over S3 storage (moto's server in its own process on loopback): the turn's local
  copy takes what changed in S3 before the command (one listing when nothing did) and writes back what
  the command changed (nothing for `echo hi`), under the per-user lease;
- a 100 MB upload and download through botline, MB/s each, and the server's RSS growth (streamed: the
  file is never held in memory, so growth should stay far under the file's size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3

from bench import servers
from botline.domain.clock import SystemClock
from botline.engine.locks import SessionLocks
from botline.shell.files import ShellFiles
from botline.shell.paths import ShellPath
from botline.shell.quota import Quotas
from botline.shell.s3 import S3FileStore
from botline.shell.sandbox import Sandbox, ToolPolicy
from botline.shell.settings import BashSettings, S3Settings, ShellSettings
from botline.shell.storage import UserRoot
from botline.shell.workspace import SyncedWorkspaces
from botline.store import open_store

MB = 1024 * 1024


async def bash_round_trips(base: Path, runs: int) -> dict[str, float]:
    sandbox = Sandbox(BashSettings())
    await sandbox.probe(base)
    if sandbox.unavailable:
        return {"unavailable": 1.0}
    home = Path(tempfile.mkdtemp(dir=base))
    if sandbox.owner:
        os.chown(home, *sandbox.owner)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await sandbox.run(home, "echo hi", ToolPolicy())
        times.append((time.perf_counter() - started) * 1000)
        assert result.stdout == b"hi\n", result
    return _percentiles(times)


def _percentiles(times: list[float]) -> dict[str, float]:
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(len(times) * 0.95) - 1]}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in its own process (not a thread of this one: the GIL would blur the timings)."""
    port = servers.free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("moto's server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def s3_round_trips(base: Path, endpoint: str, runs: int, files: int) -> dict[str, float]:
    """`echo hi` in a turn's synced copy of a user holding `files` small files in S3 (persistence on)."""
    sandbox = Sandbox(BashSettings())
    scratch = base / "scratch"
    await sandbox.probe(scratch)
    if sandbox.unavailable:
        return {"unavailable": 1.0}
    s3 = S3Settings(bucket="bench", endpoint_url=endpoint, access_key_id="bench", secret_access_key="bench")
    settings = ShellSettings(storage="s3", s3=s3, scratch_path=scratch)
    bucket = boto3.client("s3", endpoint_url=endpoint, region_name=s3.region, aws_access_key_id="bench",
                          aws_secret_access_key="bench")
    await asyncio.to_thread(bucket.create_bucket, Bucket="bench")
    remote = await S3FileStore.open(s3)
    async with await open_store(f"sqlite:///{base / 'bench.db'}") as store:
        leases = SessionLocks(store.locks)
        shell_files = ShellFiles(remote, settings, Quotas(remote, settings, store.reservations, leases,
                                                          SystemClock()), b"bench")
        root = UserRoot("bench", "user")
        for number in range(files):
            async def body(number: int = number) -> AsyncIterator[bytes]:
                yield f"file {number}\n".encode() * 100

            await shell_files.upload(root, ShellPath.parse(f"data/{number}.txt"), body(), None)
        workspaces = SyncedWorkspaces(shell_files, remote, settings, store.locks, sandbox.owner)
        workspace = workspaces.open(root, True)
        started = time.perf_counter()
        async with workspace.command():
            pass
        first_copy_ms = (time.perf_counter() - started) * 1000
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            async with workspace.command() as mounts:
                result = await sandbox.run(mounts.workdir, "echo hi", ToolPolicy())
            times.append((time.perf_counter() - started) * 1000)
            assert result.stdout == b"hi\n", result
        await workspace.close()
        await workspaces.close()
        await leases.close()
    await remote.close()
    return {**_percentiles(times), "first_copy_ms": first_copy_ms, "files": float(files)}


async def transfer(url: str, size_mb: int, pid: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {servers.BENCH_KEY}", "X-Shell-User-Id": "bench"}
    block = b"x" * MB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size_mb):
            yield block

    before = servers.rss_mb(pid)
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.post(f"{url}/api/v1/shell/io/file", params={"path": "big.bin"}, data=body(),
                             headers=headers) as response:
            assert response.status == 200, await response.text()
        upload_s = time.perf_counter() - started
        after_upload = servers.rss_mb(pid)
        started, read = time.perf_counter(), 0
        async with http.get(f"{url}/api/v1/shell/io/file", params={"path": "big.bin"}, headers=headers) as response:
            async for chunk in response.content.iter_chunked(MB):
                read += len(chunk)
        download_s = time.perf_counter() - started
    assert read == size_mb * MB
    return {"upload_mb_s": size_mb / upload_s, "download_mb_s": size_mb / download_s,
            "rss_before_mb": before, "rss_growth_upload_mb": after_upload - before,
            "rss_growth_total_mb": servers.rss_mb(pid) - before}


def run(*, runs: int = 50, size_mb: int = 100) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="botline-bench-shell-", dir="/tmp") as folder:
        work = Path(folder)
        work.chmod(0o711)
        results: dict[str, object] = {"bash_echo": asyncio.run(bash_round_trips(work, runs))}
        with moto_server() as endpoint:
            results["bash_echo_s3"] = asyncio.run(s3_round_trips(work, endpoint, runs, files=20))
        with servers.fake_llm(work) as upstream, servers.botline(
                work, upstream, overrides={"shell": {"local_path": str(work / "shell")}}) as server:
            results["transfer"] = asyncio.run(transfer(f"http://127.0.0.1:{server.port}", size_mb,
                                                       server.process.pid))
    return results


def table(results: dict[str, Any]) -> str:
    bash, over_s3, moved = results["bash_echo"], results["bash_echo_s3"], results["transfer"]

    def trips(measured: dict[str, float]) -> str:
        if "unavailable" in measured:
            return "sandbox unavailable on this host"
        return f"p50 {measured['p50_ms']:.1f} ms, p95 {measured['p95_ms']:.1f} ms"

    return "\n".join([
        "| measure | result | target (issue 16) |", "|---|---|---|",
        f"| bash tool round trip, `echo hi`, sandbox start included | {trips(bash)} | p50 ≤ 50 ms |",
        f"| the same over S3 (moto on loopback; the user holds {over_s3.get('files', 0):.0f} files), "
        f"pull and write-back included | {trips(over_s3)} | — |",
        f"| first copy of those files into a turn's workspace | {over_s3.get('first_copy_ms', 0):.0f} ms | — |",
        f"| upload (local disk, streamed) | {moved['upload_mb_s']:.0f} MB/s | — |",
        f"| download | {moved['download_mb_s']:.0f} MB/s | — |",
        f"| server RSS growth over the upload and download | {moved['rss_growth_total_mb']:+.1f} MB | ≤ 20 MB |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(runs=args.runs, size_mb=args.size_mb), indent=2))


if __name__ == "__main__":
    main()
