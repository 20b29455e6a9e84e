"""SIGTERM while items run: no new claims, and what is still running after the grace period goes back
to the queue at once (another replica or the next start takes it, without waiting for its lease)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botline.domain.batch import ItemState
from botline.store import open_store
from tests.batch.helpers import BatchApi, numbered
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import make_settings, running_server


async def test_items_running_at_shutdown_go_back_to_pending(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'botline.db'}"
    never = asyncio.Event()
    settings = make_settings(database, server={"shutdown_grace_seconds": 0.2},
                             batch={"poll_seconds": 0.05, "max_concurrent_per_job": 2, "lease_seconds": 600})
    async with FakeLLM(api_key=UPSTREAM_KEY) as fake:
        fake.script(*[Reply(text="{}", hold=never)] * 2)
        async with running_server(settings) as server:
            api = BatchApi(server.call)
            await api.setup(await create_gateway(server, fake))
            await api.load(numbered(3))
            await fake.wait_for_requests(2)
        assert len(fake.requests) == 2  # the third item was never claimed
    async with await open_store(database) as store:
        counts = await store.batch_jobs.counts(api.job)
        assert (counts.pending, counts.running) == (3, 0)
        accounts = await store.accounts.list()
        items = await store.batch_items.list_for_job(accounts[0].id, api.job)
        assert {item.state for item, _ in items} == {ItemState.PENDING}
