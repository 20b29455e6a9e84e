"""The `botline` command as a user runs it: real processes, real exit codes, real output."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import free_port

BOTLINE = [sys.executable, "-m", "botline.cli"]
START_TIMEOUT = 20.0


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOTLINE, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=60)


def write_config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"storage:\n  url: sqlite:///{tmp_path / 'db.sqlite'}\n{text}")
    return path


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        ("server:\n  port: nope\n", {}, "config key server.port"),
        ("", {"BOTLINE_SERVER__PORT": "99999"}, "config key server.port"),
        ("auth:\n  unknown: 1\n", {}, "config key auth.unknown"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, config: str, env: dict[str, str], expected: str
) -> None:
    path = write_config(tmp_path, config)
    for command in (["config", "check"], ["serve"]):
        result = run_cli(*command, "--config", str(path), cwd=tmp_path, env=env)
        assert result.returncode == 2
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    result = run_cli("config", "check", "--config", str(write_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0 and "config OK" in result.stdout


def test_keys_and_accounts_are_printed_once(tmp_path: Path) -> None:
    path = str(write_config(tmp_path))
    key = run_cli("keys", "create", "--label", "ops", "--config", path, cwd=tmp_path)
    assert key.returncode == 0 and key.stdout.strip().startswith("sk-") and len(key.stdout.strip()) >= 35
    account = run_cli("accounts", "create", "--name", "Acme", "--config", path, cwd=tmp_path)
    assert account.returncode == 0 and "API key (shown once): sk-" in account.stdout


@asynccontextmanager
async def serve(tmp_path: Path, config: str = "") -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """`botline serve` in a child process; yields it, its URL and its stdout lines so far."""
    port = free_port()
    path = write_config(tmp_path, config)
    process = await asyncio.create_subprocess_exec(
        *BOTLINE, "serve", "--config", str(path), "--port", str(port), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while not any("serving on" in line for line in lines):
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            assert line, f"botline exited early: {lines}"
            lines.append(line.decode())
        yield process, f"http://127.0.0.1:{port}", lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_prints_the_admin_key_once_and_answers_healthz(tmp_path: Path) -> None:
    async with serve(tmp_path) as (process, url, lines):
        [key_line] = [line for line in lines if "Admin API key" in line]
        key = key_line.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/healthz") as response:
                assert response.status == 200
            async with http.get(url + "/api/v1/accounts/api-key", headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    async with serve(tmp_path) as (_, _, lines):
        assert not any("Admin API key" in line for line in lines)


async def test_sigterm_lets_an_in_flight_turn_finish(tmp_path: Path) -> None:
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake:
        fake.script(Reply(text="finished despite SIGTERM", delay=1.0))
        gateway = (
            "auth:\n  admin_keys: [sk-cli-test-key-abcdefghijklmnopqrstuvwxyz012345]\n"
            f"gateways:\n  - name: main\n    parameters:\n      baseAddress: {fake.base_url}\n"
            f"      apiKey: {UPSTREAM_KEY}\n      modelName: fake-model\n"
        )
        async with serve(tmp_path, gateway) as (process, url, _):
            async with aiohttp.ClientSession() as http:
                request = asyncio.create_task(http.post(
                    url + "/v1/chat/completions",
                    json={"model": "main", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": "Bearer sk-cli-test-key-abcdefghijklmnopqrstuvwxyz012345"},
                ))
                await fake.wait_for_requests(1)
                process.send_signal(signal.SIGTERM)
                response = await request
                assert response.status == 200
                body = await response.json()
                assert body["choices"][0]["message"]["content"] == "finished despite SIGTERM"
            assert await asyncio.wait_for(process.wait(), 20) == 0
