"""The model's bash tool end to end: a gateway with enableBash, the fake model calling `bash`, the answer
the model reads back; escapes through the tool, and /healthz staying fast while a command misbehaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from botline.api.state import SERVICES
from tests.conftest import create_gateway, gateway_body
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.shell.test_files_api import download, upload
from tests.support.server import RunningServer, make_settings, running_server

ALICE = {"X-Shell-User-Id": "alice"}


@pytest.fixture
def bash_settings() -> dict[str, Any]:
    return {"timeout_seconds": 3, "cpu_seconds": 3, "max_file_mb": 2}


@pytest.fixture
async def bash_server(traversable: Path, tmp_path: Path,
                      bash_settings: dict[str, Any]) -> AsyncIterator[RunningServer]:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                             shell={"local_path": str(traversable / "shell"), "bash": bash_settings})
    async with running_server(settings) as running:
        assert running.app is not None
        if running.app[SERVICES].sandbox.unavailable:
            pytest.skip(f"no sandbox on this host: {running.app[SERVICES].sandbox.unavailable}")
        yield running


async def bash_turn(server: RunningServer, fake: FakeLLM, gateway_id: str, *commands: str,
                    user: str = "alice") -> list[str]:
    """One /v1 turn in which the model runs `commands` (one round each); returns what it read back."""
    fake.script(*[Reply(tool_calls=[ToolCall("bash", {"command": c})]) for c in commands], Reply(text="Done."))
    status, answer = await server.call("POST", "/v1/chat/completions", json={
        "model": gateway_id, "user": user, "messages": [{"role": "user", "content": "go"}]})
    assert status == 200, answer
    return [m["content"] for m in fake.requests[-1].body["messages"] if m["role"] == "tool"]


async def test_the_model_counts_the_lines_of_an_uploaded_file(bash_server: RunningServer, fake_llm: FakeLLM) -> None:
    await upload(bash_server, "data.csv", b"name,age\nana,31\nbruno,42\n", user=ALICE)
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True,
                                      bashOptions={"allowDataPersistence": True})
    [result] = await bash_turn(bash_server, fake_llm, gateway_id, "wc -l data.csv")
    assert result.startswith("exit code: 0") and "3 data.csv" in result
    assert "bash" in [t["function"]["name"] for t in fake_llm.requests[0].body["tools"]]


async def test_files_the_model_writes_persist_for_the_user_when_allowed(bash_server: RunningServer,
                                                                        fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True,
                                      bashOptions={"allowDataPersistence": True})
    await bash_turn(bash_server, fake_llm, gateway_id, "mkdir -p out && printf 'a\\nb\\n' | sort -r > out/r.txt")
    assert (await download(bash_server, "out/r.txt", user=ALICE))[1] == b"b\na\n"


async def test_without_persistence_a_turn_has_scratch_space_and_read_only_files(bash_server: RunningServer,
                                                                                 fake_llm: FakeLLM) -> None:
    await upload(bash_server, "in.txt", b"hello\n", user=ALICE)
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True)
    first = await bash_turn(bash_server, fake_llm, gateway_id, "cp files/in.txt copy.txt", "cat copy.txt",
                            "echo x > files/in.txt")
    assert "hello" in first[1] and "Read-only file system" in first[2]
    [later] = await bash_turn(bash_server, fake_llm, gateway_id, "ls")
    assert "copy.txt" not in later
    assert (await download(bash_server, "copy.txt", user=ALICE))[0] == 404


async def test_a_blacklisted_program_is_refused_with_an_error_the_model_reads(bash_server: RunningServer,
                                                                              fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True, bashOptions={
        "toolExclusionMode": "BlackList", "toolList": ["wc"]})
    [result] = await bash_turn(bash_server, fake_llm, gateway_id, "echo hi | wc -c")
    assert "exit code: 126" in result and "Permission denied" in result


async def test_a_symlink_made_by_the_model_does_not_serve_host_files(bash_server: RunningServer,
                                                                     fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True,
                                      bashOptions={"allowDataPersistence": True})
    await bash_turn(bash_server, fake_llm, gateway_id, "ln -s /etc/passwd passwd; ln -s / host")
    assert (await download(bash_server, "passwd", user=ALICE))[0] == 404
    assert (await download(bash_server, "host/etc/passwd", user=ALICE))[0] == 404
    status, _ = await bash_server.call("GET", "/api/v1/shell/io/file/public-address", params={"path": "passwd"},
                                       headers=ALICE)
    assert status == 404


async def test_users_do_not_see_each_others_files(bash_server: RunningServer, fake_llm: FakeLLM) -> None:
    await upload(bash_server, "bob-secret.txt", b"bob's", user={"X-Shell-User-Id": "bob"})
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True,
                                      bashOptions={"allowDataPersistence": True})
    [result] = await bash_turn(bash_server, fake_llm, gateway_id,
                               "find / -name 'bob-secret*' 2>/dev/null; cat ../*/bob-secret.txt")
    assert "bob's" not in result and "bob-secret" not in result.split("stderr")[0].replace("find /", "")


async def test_healthz_stays_fast_while_commands_burn_cpu_fork_and_flood(bash_server: RunningServer,
                                                                         fake_llm: FakeLLM) -> None:
    gateway_id = await create_gateway(bash_server, fake_llm, enableBash=True,
                                      bashOptions={"toolExclusionMode": "BlackList"})
    turn = asyncio.create_task(bash_turn(bash_server, fake_llm, gateway_id, "while :; do :; done",
                                         ":(){ :|:& };:", "yes", "head -c 10G /dev/zero > big"))
    slowest = 0.0
    while not turn.done():
        started = time.perf_counter()
        async with bash_server.http.get(bash_server.url + "/healthz") as response:
            assert response.status == 200
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0.05)
    loop, bomb, flood, write = await turn
    assert slowest < 0.1, slowest
    assert "longer than 3 s" in loop
    assert "exit code" in bomb
    assert "more than 16384 bytes of output" in flood
    assert "File size limit exceeded" in write


@pytest.mark.parametrize(("bash_settings", "reason"), [
    ({"enabled": False}, "turned off on this server (shell.bash.enabled)"),
    ({"bwrap_path": "/opt/missing/bwrap"}, "/opt/missing/bwrap is not installed on this server"),
], ids=["turned-off", "no-bubblewrap"])
async def test_enable_bash_is_refused_at_save_time_where_the_sandbox_cannot_run(
    traversable: Path, tmp_path: Path, fake_llm: FakeLLM, bash_settings: dict[str, Any], reason: str
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                             shell={"local_path": str(traversable / "shell"), "bash": bash_settings})
    async with running_server(settings) as server:
        status, body = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm, enableBash=True))
        assert status == 400 and "parameters.enableBash" in body["message"] and reason in body["message"], body
        assert (await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm)))[0] == 200


async def test_bash_options_are_validated(bash_server: RunningServer, fake_llm: FakeLLM) -> None:
    for options, field in (({"toolList": ["../bin/sh"]}, "toolList"),
                           ({"toolExclusionMode": "Maybe"}, "toolExclusionMode"),
                           ({"toolExclusionMode": "BlackList", "toolList": ["bash"]}, "bash")):
        status, body = await bash_server.call("POST", "/api/v1/ai-gateways",
                                              json=gateway_body(fake_llm, enableBash=True, bashOptions=options))
        assert status == 400 and field in body["message"], body


async def test_a_server_whose_shell_directory_cannot_be_written_starts_and_refuses_bash(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """A container's read-only root (compose, Kubernetes) without a volume for shell files: botline serves,
    and says why bash cannot be enabled."""
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", shell={"local_path": "/proc/botline/shell"})
    async with running_server(settings) as server:
        assert (await server.call("GET", "/healthz"))[0] == 200
        status, body = await server.call("POST", "/api/v1/ai-gateways", json=gateway_body(fake_llm, enableBash=True))
        assert status == 400 and "/proc/botline/shell cannot be written" in body["message"], body
