"""Shell files and the bash tool: `python -m bench.shell`.

- the bash sandbox's round trip (`echo hi`, sandbox start included), p50 and p95 over N runs;
- a 100 MB upload and download through botline, MB/s each, and the server's RSS growth (streamed: the
  file is never held in memory, so growth should stay far under the file's size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench import servers
from botline.shell.sandbox import Sandbox, ToolPolicy
from botline.shell.settings import BashSettings

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
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(len(times) * 0.95) - 1]}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="botline-bench-shell-", dir="/tmp") as folder:
        work = Path(folder)
        work.chmod(0o711)
        results: dict[str, object] = {"bash_echo": asyncio.run(bash_round_trips(work, args.runs))}
        with servers.fake_llm(work) as upstream, servers.botline(
                work, upstream, overrides={"shell": {"local_path": str(work / "shell")}}) as server:
            results["transfer"] = asyncio.run(transfer(f"http://127.0.0.1:{server.port}", args.size_mb,
                                                       server.process.pid))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
