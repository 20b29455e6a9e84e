"""Quotas under concurrency (both storage backends): two uploads that fit alone but not together never
both pass, whether their sizes are declared or streamed without one; a finished or failed upload gives
its room back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.shell.conftest import USER
from tests.shell.test_files_api import listing, upload
from tests.support.server import RunningServer

QUOTA = {"user_quota_bytes": 1000, "account_quota_bytes": 10_000}
HALF = b"x" * 300


async def overlapping_uploads(server: RunningServer, *, declared: bool) -> list[int]:
    """Two 600-byte uploads in flight at once: each sends half its file, then waits until the other has
    sent half too (or has been answered) before sending the rest."""
    gate = asyncio.Event()
    halfway: list[int] = []

    async def body(number: int) -> AsyncIterator[bytes]:
        yield HALF
        halfway.append(number)
        if len(halfway) == 2:
            gate.set()
        await gate.wait()
        yield HALF

    async def send(number: int) -> int:
        headers = {**USER, "Content-Length": "600"} if declared else USER
        try:
            return (await upload(server, f"file-{number}", body(number), user=headers))[0]
        finally:
            gate.set()  # an answered request never sends its second half: the other may go on

    return sorted(await asyncio.gather(send(1), send(2)))


@pytest.mark.parametrize("shell_overrides", [QUOTA])
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_two_uploads_that_only_fit_alone_do_not_both_pass(shell_server: RunningServer, declared: bool) -> None:
    assert await overlapping_uploads(shell_server, declared=declared) == [200, 507]
    _, body = await listing(shell_server)
    assert sum(entry["size"] for entry in body["entries"]) == 600
    status, answer = await upload(shell_server, "third", b"x" * 500)
    assert status == 507 and "400 bytes free" in answer["message"]
    assert (await upload(shell_server, "third", b"x" * 400))[0] == 200  # the finished upload's room came back


@pytest.mark.parametrize("shell_overrides", [QUOTA])
async def test_a_refused_upload_gives_its_reservation_back(shell_server: RunningServer) -> None:
    async def too_big() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield HALF

    assert (await upload(shell_server, "big", too_big()))[0] == 507
    assert (await upload(shell_server, "fits", b"x" * 1000))[0] == 200
