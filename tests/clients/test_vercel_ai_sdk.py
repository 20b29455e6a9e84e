"""The Vercel AI SDK (`ai` + `@ai-sdk/openai`, versions pinned in tests/clients/vercel/package-lock.json),
unmodified, against /v1 (issue 18 §4): answers, streams, tool calls, usage. Node runs check.mjs, which
uses the SDK as an app would; `npm ci` installs the SDK from the registry the first time."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.server import ADMIN_KEY, RunningServer

PROJECT = Path(__file__).parent / "vercel"
INSTALL_TIMEOUT = 300


@pytest.fixture(scope="module")
def node() -> str:
    executable, npm = shutil.which("node"), shutil.which("npm")
    if executable is None or npm is None:
        pytest.skip("Node.js and npm are not installed (.ci/run installs Debian's nodejs and npm)")
    lock, installed = PROJECT / "package-lock.json", PROJECT / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROJECT, check=True,
                       timeout=INSTALL_TIMEOUT, capture_output=True)
    return executable


async def check(node: str, server: RunningServer, gateway_id: str, mode: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        node, "check.mjs", server.url + "/v1", ADMIN_KEY, gateway_id, mode, cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return orjson.loads(out)


async def test_an_answer_with_its_usage(node: str, server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="Paris.", prompt_tokens=12, completion_tokens=3))

    result = await check(node, server, gateway_id, "generate")

    assert result["text"] == "Paris."
    assert result["finishReason"] == "stop"
    assert (result["usage"]["inputTokens"], result["usage"]["outputTokens"]) == (12, 3)


async def test_a_stream_arrives_in_pieces_and_ends_with_usage(
    node: str, server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="one two three four", prompt_tokens=9, completion_tokens=4,
                          chunk_delay=0.01))  # what arrives together is sent together

    result = await check(node, server, gateway_id, "stream")

    assert len(result["chunks"]) > 1
    assert "".join(result["chunks"]) == "one two three four"
    assert (result["usage"]["inputTokens"], result["usage"]["outputTokens"]) == (9, 4)
    assert fake_llm.requests[0].body["stream"] is True


async def test_a_tool_call_reaches_the_app_with_its_arguments(
    node: str, server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(tool_calls=[ToolCall("open_door", {"door": "front"}, id="call_door")]))

    result = await check(node, server, gateway_id, "tools")

    assert result["toolCalls"] == [{"name": "open_door", "input": {"door": "front"}, "id": "call_door"}]
    assert result["finishReason"] == "tool-calls"
    assert [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]] == ["open_door"]
