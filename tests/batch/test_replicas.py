"""Two replicas on one Redis share a job: each item is processed by exactly one of them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.batch.helpers import BatchApi, Classifier, numbered
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server

ITEMS = 120
FINISHED = re.compile(r'^botline_batch_items_total\{state="Finished"\} (\S+)$', re.MULTILINE)


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = unique_prefix()
    yield name
    await delete_prefix(redis_url, name)


async def finished_here(server: RunningServer) -> int:
    _, text = await server.call("GET", "/metrics")
    found = FINISHED.search(str(text))
    return int(float(found.group(1))) if found else 0


async def test_two_replicas_share_one_job_without_processing_an_item_twice(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Each replica alone may run 2 items, the job 8: one replica cannot fill the job's cap by itself,
    # so the other always finds room when it polls (with one replica able to fill it, whichever
    # replica frees a slot claims again first and may legitimately take every item).
    classifier = Classifier(delay=0.02)
    batch = {"poll_seconds": 0.05, "max_concurrent_items": 2, "max_concurrent_per_job": 8}
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=classifier) as fake:
        settings = [make_settings(redis_url, storage={"url": redis_url, "redis_prefix": prefix}, batch=batch)
                    for _ in range(2)]
        async with running_server(settings[0]) as one, running_server(settings[1]) as two:
            api = BatchApi(one.call)
            await api.setup(await create_gateway(one, fake))
            await api.load(numbered(ITEMS))
            summary = await _on(api, two).wait(lambda s: s["finished"] == ITEMS)
            assert (summary["total"], summary["failed"]) == (ITEMS, 0)
            shares = [await finished_here(one), await finished_here(two)]
        assert sum(shares) == ITEMS and min(shares) > 0, shares
        assert set(classifier.calls) == set(numbered(ITEMS)) and set(classifier.calls.values()) == {1}


def _on(api: BatchApi, server: RunningServer) -> BatchApi:
    """The same job, watched through another replica."""
    other = BatchApi(server.call)
    other.workflow, other.job = api.workflow, api.job
    return other


async def test_concurrency_caps_hold_across_replicas(redis_url: str, prefix: str) -> None:
    """Per job 2 and per account 3 with two replicas of 8 slots each: the model never has more of one
    job's items (or of the account's) in flight at once, although each replica alone has room for more."""
    classifier = Classifier(delay=0.15)
    batch = {"poll_seconds": 0.05, "max_concurrent_items": 8, "max_concurrent_per_job": 2,
             "max_concurrent_per_account": 3}
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=classifier) as fake:
        settings = [make_settings(redis_url, storage={"url": redis_url, "redis_prefix": prefix}, batch=batch)
                    for _ in range(2)]
        async with running_server(settings[0]) as one, running_server(settings[1]) as two:
            gateway = await create_gateway(one, fake)
            jobs = [BatchApi(one.call), BatchApi(two.call)]
            for api in jobs:
                await api.setup(gateway)
            inputs = numbered(24)
            await jobs[0].load(inputs[:12])
            await jobs[1].load(inputs[12:])
            for api in jobs:
                await api.wait(lambda s: s["finished"] == 12)
            shares = [await finished_here(one), await finished_here(two)]
        per_job = {user: most for user, most in fake.max_in_flight_by_user.items() if user.startswith("batch:")}
        assert sorted(per_job) == sorted(f"batch:{api.job}" for api in jobs)
        assert max(per_job.values()) <= 2 and fake.max_in_flight <= 3, (per_job, fake.max_in_flight)
        assert fake.max_in_flight == 3, "the account's cap is reached, not undershot"
        assert sum(shares) == 24 and set(classifier.calls.values()) == {1}
