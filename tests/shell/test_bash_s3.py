"""The bash tool over S3 storage (moto's server on loopback): each turn works on a local copy that takes
the user's files before each command and writes what the command changed back (new, changed, deleted),
within the quota; without persistence nothing goes back; two replicas running turns of one user take
turns command by command (a lease in the Store), so no change is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from botline.api.state import SERVICES
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.shell.conftest import shell_settings
from tests.shell.test_bash_tool import bash_turn
from tests.shell.test_files_api import download, listing, upload
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server

ALICE = {"X-Shell-User-Id": "alice"}
PERSIST = {"enableBash": True, "bashOptions": {"allowDataPersistence": True}}


def s3_settings(storage: str, folder: Path, endpoint: str, *, redis_prefix: str = "botline", **shell: Any) -> Any:
    return make_settings(storage, storage={"url": storage, "redis_prefix": redis_prefix},
                         shell=shell_settings("s3", folder, endpoint,
                                              bash={"timeout_seconds": 5}, **shell))


async def started(settings: Any, stack: AsyncExitStack) -> RunningServer:
    server = await stack.enter_async_context(running_server(settings))
    assert server.app is not None
    if server.app[SERVICES].sandbox.unavailable:
        pytest.skip(f"no sandbox on this host: {server.app[SERVICES].sandbox.unavailable}")
    return server


@pytest.fixture
def shell_limits() -> dict[str, Any]:
    return {}


@pytest.fixture
async def s3_bash(traversable: Path, tmp_path: Path, s3_endpoint: str,
                  shell_limits: dict[str, Any]) -> AsyncIterator[RunningServer]:
    async with AsyncExitStack() as stack:
        yield await started(s3_settings(f"sqlite:///{tmp_path / 'botline.db'}", traversable, s3_endpoint,
                                        **shell_limits), stack)


async def test_commands_read_and_change_the_users_files_in_s3(s3_bash: RunningServer, fake_llm: FakeLLM) -> None:
    await upload(s3_bash, "data.csv", b"name,age\nana,31\nbruno,42\n", user=ALICE)
    await upload(s3_bash, "old/stale.txt", b"bye", user=ALICE)
    gateway_id = await create_gateway(s3_bash, fake_llm, **PERSIST)
    counted, changed = await bash_turn(s3_bash, fake_llm, gateway_id, "wc -l data.csv",
                                       "sort -r data.csv > sorted.csv && rm -r old && mkdir -p empty")
    assert counted.startswith("exit code: 0") and "3 data.csv" in counted
    assert changed.startswith("exit code: 0") and "not saved" not in changed
    assert (await download(s3_bash, "sorted.csv", user=ALICE))[1] == b"name,age\nbruno,42\nana,31\n"
    _, body = await listing(s3_bash, user=ALICE)
    assert sorted((e["name"], e["isDirectory"]) for e in body["entries"]) == [
        ("data.csv", False), ("empty", True), ("sorted.csv", False)]
    [later] = await bash_turn(s3_bash, fake_llm, gateway_id, "cat sorted.csv | head -1; ls")  # a new turn's copy
    assert "name,age" in later and "old" not in later


async def test_without_persistence_nothing_is_written_back(s3_bash: RunningServer, fake_llm: FakeLLM) -> None:
    await upload(s3_bash, "in.txt", b"hello\n", user=ALICE)
    gateway_id = await create_gateway(s3_bash, fake_llm, enableBash=True)
    copied, refused = await bash_turn(s3_bash, fake_llm, gateway_id, "cp files/in.txt copy.txt && cat copy.txt",
                                      "rm files/in.txt")
    assert "hello" in copied and "Read-only file system" in refused
    _, body = await listing(s3_bash, user=ALICE)
    assert [e["name"] for e in body["entries"]] == ["in.txt"]


@pytest.mark.parametrize("shell_limits", [{"user_quota_bytes": 4096}])
async def test_changes_past_the_quota_are_not_written_back_and_the_model_is_told(
    s3_bash: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(s3_bash, fake_llm, **PERSIST)
    too_much, trimmed = await bash_turn(s3_bash, fake_llm, gateway_id, "head -c 5000 /dev/zero > big.bin",
                                        "rm big.bin && echo small > small.txt")
    assert "not saved to the user's files" in too_much and "Not enough storage" in too_much
    assert "not saved" not in trimmed
    _, body = await listing(s3_bash, user=ALICE)
    assert [e["name"] for e in body["entries"]] == ["small.txt"]


async def test_two_replicas_running_turns_of_one_user_lose_no_change(
    traversable: Path, s3_endpoint: str, redis_url: str, fake_llm: FakeLLM
) -> None:
    prefix = unique_prefix()
    try:
        async with AsyncExitStack() as stack:
            one, two = [await started(s3_settings(redis_url, traversable, s3_endpoint, redis_prefix=prefix), stack)
                        for _ in range(2)]
            gateway_id = await create_gateway(one, fake_llm, **PERSIST)
            appends = 6
            fake_llm.script(*[Reply(tool_calls=[ToolCall("bash", {"command": "sleep 0.1; echo line >> log.txt"})])
                              for _ in range(appends)], Reply(text="Done."), Reply(text="Done."))

            async def turn(server: RunningServer) -> None:
                status, answer = await server.call("POST", "/v1/chat/completions", json={
                    "model": gateway_id, "user": "alice", "messages": [{"role": "user", "content": "append"}]})
                assert status == 200, answer

            await asyncio.gather(turn(one), turn(two))
            assert (await download(two, "log.txt", user=ALICE))[1] == b"line\n" * appends
    finally:
        await delete_prefix(redis_url, prefix)
