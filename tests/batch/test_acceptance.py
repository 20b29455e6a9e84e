"""The issue's acceptance runs against one in-process server and the fake LLM: 200 items end Finished
and export one to one; invalid answers end ValidationError and finish after items/retry; pause,
resume and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.batch.helpers import SCHEMA, BatchApi, Classifier, numbered
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

POLL_SECONDS = 0.05
SEED_SUMMARY = {"id", "parentBatchWorkflowId", "workflowTitle", "title", "createdAt", "state", "restartedAt",
                "pending", "finished", "refused", "executionErrors", "validationErrors", "cancelled", "running",
                "totalCost", "averageConfidence", "successRate", "refusalRate", "eventCount", "failed", "completed",
                "total"}
"""The seed's job summary (GET /api/v1/batch/jobs, the job view's `summary`), field for field."""
SEED_ITEM = {"id", "parentBatchWorkflowJobId", "insertedAt", "processedAt", "state", "priority", "input", "output",
             "validationResult", "confidence", "totalCost"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"batch": {"poll_seconds": POLL_SECONDS, "retry_base_seconds": 0, "max_concurrent_per_job": 8,
                      "prices": {"fake-model": {"input_per_million": 2.0, "output_per_million": 8.0}}}}


@pytest.fixture
def classifier() -> Classifier:
    return Classifier()


@pytest.fixture
async def model(classifier: Classifier) -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=classifier) as fake:
        yield fake


@pytest.fixture
async def api(server: RunningServer, model: FakeLLM) -> BatchApi:
    batch = BatchApi(server.call)
    await batch.setup(await create_gateway(server, model), maxRetries=1)
    return batch


async def test_two_hundred_items_finish_schema_valid_and_export_one_to_one(
    server: RunningServer, api: BatchApi, classifier: Classifier
) -> None:
    inputs = numbered(200)
    assert await api.load([*inputs, "", "   "]) == {"inserted": 200, "skipped": 0}
    summary = await api.wait(lambda s: s["finished"] == 200)
    assert (summary["pending"], summary["running"], summary["failed"], summary["total"]) == (0, 0, 0, 200)
    assert summary["successRate"] == 1.0 and summary["averageConfidence"] == pytest.approx(0.9)
    assert summary["totalCost"] == pytest.approx(200 * (1000 * 2.0 + 500 * 8.0) / 1e6)
    view = await api.view()
    assert view["job"]["state"] == "Finished"
    assert [u["eventType"] for u in view["job"]["updates"]] == ["Created", "Imported", "Finished"]
    status, text = await server.call("GET", api.base + "/export.jsonl")
    assert status == 200
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert [line["input"] for line in lines] == inputs
    for line in lines:
        n = orjson.loads(line["input"])["n"]
        assert line["state"] == "Finished" and line["confidence"] == 0.9
        assert orjson.loads(line["output"]) == {"n": n, "parity": "even" if n % 2 == 0 else "odd"}
    assert set(classifier.calls.values()) == {1}
    _, workflows = await server.call("GET", "/api/v1/batch/workflows")
    assert [w["jobCount"] for w in workflows] == [1]
    _, listed = await server.call("GET", "/api/v1/batch/jobs")
    assert set(view["summary"]) == set(listed[0]) == SEED_SUMMARY  # every counter of the seed, nothing else
    assert set(view["progression"][0]) == {"moment", "finished", "failed", "averageConfidence", "refusalRate"}
    assert len(view["latestItems"]) == 10 and set(view["latestItems"][0]) == SEED_ITEM


async def test_invalid_answers_end_validation_error_then_retry_finishes_them(
    api: BatchApi, classifier: Classifier
) -> None:
    classifier.broken = True
    await api.load(numbered(3))
    summary = await api.wait(lambda s: s["validationErrors"] == 3)
    assert summary["finished"] == 0 and summary["successRate"] == 0.0
    assert set(classifier.calls.values()) == {2}  # the first answer and maxRetries (1) more
    [item] = await api.items(state="ValidationError", take=1)
    _, detail = await api.call("GET", f"{api.base}/items/{item['id']}")
    assert detail["validationResult"]["passed"] is False and "not JSON" in detail["validationResult"]["reason"]
    assert detail["output"] == "Sure! The parity is probably even."
    classifier.broken = False
    _, retried = await api.call("POST", api.base + "/items/retry")
    assert retried["job"]["state"] == "Active"
    summary = await api.wait(lambda s: s["finished"] == 3)
    assert summary["validationErrors"] == 0 and summary["failed"] == 0
    assert [u["eventType"] for u in (await api.view())["job"]["updates"]][-3:] == ["Retried", "Restarted", "Finished"]


async def test_pause_stops_claims_resume_continues_and_cancel_ends_pending_items(
    server: RunningServer, model: FakeLLM
) -> None:
    release, later = asyncio.Event(), asyncio.Event()
    answer = orjson.dumps({"result": {"n": 0, "parity": "even"}}).decode()
    model.script(*[Reply(text=answer, hold=release) for _ in range(8)], *[Reply(text=answer, hold=later)] * 12)
    api = BatchApi(server.call)
    await api.setup(await create_gateway(server, model))
    await api.load(numbered(20))
    await model.wait_for_requests(8)  # max_concurrent_per_job: 8 running, each waiting for `release`
    _, paused = await api.call("PATCH", api.base, json={"state": "pause"})
    assert paused["job"]["state"] == "Paused" and paused["summary"]["running"] == 8
    release.set()
    await api.wait(lambda s: s["finished"] == 8 and s["running"] == 0)
    await asyncio.sleep(POLL_SECONDS * 4)  # several poll intervals: a paused job is not claimed from
    assert len(model.requests) == 8
    _, resumed = await api.call("PATCH", api.base, json={"state": "Active"})
    assert resumed["job"]["state"] == "Active" and resumed["job"]["restartedAt"] is not None
    await model.wait_for_requests(16)  # the next 8, held
    _, cancelled = await api.call("PATCH", api.base, json={"state": "cancel", "title": "stopped"})
    assert cancelled["job"]["state"] == "Finished" and cancelled["job"]["title"] == "stopped"
    assert cancelled["summary"]["cancelled"] == 4 and cancelled["summary"]["running"] == 8
    later.set()  # running items finish; they are recorded
    summary = await api.wait(lambda s: s["running"] == 0)
    assert (summary["finished"], summary["cancelled"], summary["pending"]) == (16, 4, 0)
    assert len(model.requests) == 16
    events = [u["eventType"] for u in (await api.view())["job"]["updates"]]
    assert events[:5] == ["Created", "Imported", "Paused", "Resumed", "Cancelled"]


async def test_the_schema_goes_upstream_as_structured_output_when_the_gateway_allows_it(
    server: RunningServer, model: FakeLLM
) -> None:
    api = BatchApi(server.call)
    await api.setup(await create_gateway(server, model, flags=["StructuredOutputSupport"]))
    await api.load(numbered(1))
    await api.wait(lambda s: s["finished"] == 1)
    request = model.requests[-1].body
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["properties"]["result"] == SCHEMA
    assert request["user"].startswith("batch:")
