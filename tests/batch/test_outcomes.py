"""How single items end: refusal, upstream errors with retries, the judge, the error threshold, a
disabled account; and how the API refuses bad workflows and imports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from botline.api.state import SERVICES
from botline.domain.batch import JobEvent, JobState
from tests.api.test_disabled_accounts import set_disabled, tenant
from tests.batch.helpers import BatchApi, Classifier, numbered
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

VALID = orjson.dumps({"result": {"n": 0, "parity": "even"}, "confidence": 0.4}).decode()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"batch": {"poll_seconds": 0.05, "retry_base_seconds": 0, "max_concurrent_per_job": 1}}


@pytest.fixture
async def model() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=Classifier()) as fake:
        yield fake


async def one_item(server: RunningServer, model: FakeLLM, **workflow: Any) -> dict[str, Any]:
    """Runs one item (`{"n": 0}`) to its end; the item as the API shows it."""
    api = BatchApi(server.call)
    await api.setup(await create_gateway(server, model), **workflow)
    await api.load(numbered(1))
    await api.wait(lambda s: s["pending"] == 0 and s["running"] == 0)
    [listed] = await api.items()
    _, item = await server.call("GET", f"{api.base}/items/{listed['id']}")
    return dict(item)


async def test_a_refusal_ends_refused_with_the_models_words(server: RunningServer, model: FakeLLM) -> None:
    model.script(Reply(refusal="I can't help with that."))
    item = await one_item(server, model)
    assert item["state"] == "Refused" and item["validationResult"] == {"passed": False,
                                                                       "reason": "I can't help with that."}
    assert item["totalCost"] == 0  # no price configured: never invented


async def test_upstream_errors_are_retried_then_end_execution_error(server: RunningServer, model: FakeLLM) -> None:
    model.script(Reply(status=503), Reply(status=429, retry_after=0), Reply(text=VALID))
    item = await one_item(server, model, maxRetries=2)
    assert item["state"] == "Finished" and item["confidence"] == 0.4
    model.script(*[Reply(status=500)] * 3)
    failed = await one_item(server, model, maxRetries=2)
    assert failed["state"] == "ExecutionError" and "failed" in failed["validationResult"]["reason"]


async def test_the_judge_decides_with_validation_instruction(server: RunningServer, model: FakeLLM) -> None:
    model.script(Reply(text=VALID), Reply(text='{"passed": false, "reason": "n is not a prime"}'))
    judged = await one_item(server, model, options={"validationInstruction": "n must be prime."})
    assert judged["state"] == "ValidationError" and judged["output"] == '{"n":0,"parity":"even"}'
    assert judged["validationResult"] == {"passed": False, "reason": "n is not a prime"}
    assert "n must be prime." in model.requests[-1].body["messages"][0]["content"]
    model.script(Reply(text=VALID), Reply(text='```json\n{"passed": true, "reason": "fine"}\n```'))
    passed = await one_item(server, model, options={"validationInstruction": "n must be even."})
    assert passed["state"] == "Finished" and passed["validationResult"] == {"passed": True, "reason": "fine"}


async def test_a_schema_miss_names_the_field(server: RunningServer, model: FakeLLM) -> None:
    model.script(*[Reply(text='{"result": {"n": "zero", "parity": "even"}, "confidence": 1}')] * 2)
    item = await one_item(server, model, maxRetries=1)
    assert item["state"] == "ValidationError"
    assert "at n" in item["validationResult"]["reason"] and "integer" in item["validationResult"]["reason"]


async def test_the_error_threshold_pauses_the_job(server: RunningServer, model: FakeLLM) -> None:
    model.script(*[Reply(status=500)] * 4)
    api = BatchApi(server.call)
    await api.setup(await create_gateway(server, model), maxRetries=0, errorStopThreshold=2)
    await api.load(numbered(5))
    await api.wait(lambda s: s["executionErrors"] == 2 and s["running"] == 0)
    view = await api.view()
    assert view["job"]["state"] == "Paused" and view["job"]["updates"][-1]["eventType"] == "ErrorThreshold"
    assert view["summary"]["pending"] == 3


async def test_a_disabled_accounts_jobs_claim_nothing_until_it_is_enabled(
    server: RunningServer, model: FakeLLM
) -> None:
    owner = await tenant(server)
    api = BatchApi(lambda method, path, **kw: server.call(method, path, key=owner.secret, **kw))
    await api.setup(await create_gateway(server, model, key=owner.secret))
    await api.call("PATCH", api.base, json={"state": "pause"})
    await api.load(numbered(2))
    await set_disabled(server, owner.record.account_id, True)
    assert server.app is not None
    svc = server.app[SERVICES]
    await svc.store.batch_jobs.transition(owner.record.account_id, api.job, JobState.ACTIVE,
                                          allowed_from=frozenset(JobState), event=JobEvent(event_type="Resumed",
                                                                                           description="test"))
    svc.batch.kick()
    await asyncio.sleep(0.3)  # six poll intervals
    assert model.requests == []
    await set_disabled(server, owner.record.account_id, False)
    await api.wait(lambda s: s["finished"] == 2)


async def test_bad_workflows_and_imports_are_refused_naming_the_field(server: RunningServer, model: FakeLLM) -> None:
    gateway = await create_gateway(server, model)
    bad = {"modelName": gateway, "options": {"instruction": "x", "resultSchema": {"type": "object",
                                                                                   "pattern": "(a)\\1"}}}
    status, body = await server.call("POST", "/api/v1/batch/workflows", json=bad)
    assert status == 400 and "options.resultSchema" in body["message"]
    status, body = await server.call("POST", "/api/v1/batch/workflows", json={**bad, "modelName": "nope"})
    assert status == 400
    status, body = await server.call("POST", "/api/v1/batch/workflows", json={
        "modelName": "nope", "options": {"instruction": "x", "resultSchema": {"type": "object"}}})
    assert status == 400 and "modelName" in body["message"]
    api = BatchApi(server.call)
    await api.setup(gateway)
    status, body = await server.call("PATCH", f"/api/v1/batch/workflows/{api.workflow}",
                                     json={"options": {"instruction": "Say hi."}, "maxRetries": 99})
    assert status == 400 and "maxRetries" in body["message"]
    status, body = await server.call("PATCH", f"/api/v1/batch/workflows/{api.workflow}",
                                     json={"options": {"instruction": "Say hi."}})
    assert status == 200 and body["options"]["instruction"] == "Say hi." and body["options"]["resultSchema"]
    status, body = await server.call("POST", api.base + "/items", json={"items": "x"})
    assert status == 415
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.jsonl")
    status, body = await server.call("POST", api.base + "/items", data=form)
    assert status == 400 and "items" in body["message"]
    form = aiohttp.FormData()
    form.add_field("documents", b'{"n": 1}\n' + b"x" * 70_000 + b"\n\xff\xfe\n", filename="x.jsonl")
    status, body = await server.call("POST", api.base + "/items", data=form)
    assert body == {"inserted": 1, "skipped": 2}


async def test_another_accounts_workflows_jobs_and_items_are_not_found(server: RunningServer, model: FakeLLM) -> None:
    api = BatchApi(server.call)
    await api.setup(await create_gateway(server, model))
    await api.call("PATCH", api.base, json={"state": "pause"})
    await api.load(numbered(1))
    [item] = await api.items()
    other = (await tenant(server)).secret
    for method, path in [("GET", f"/api/v1/batch/workflows/{api.workflow}"), ("GET", api.base),
                         ("GET", api.base + "/items"), ("GET", f"{api.base}/items/{item['id']}"),
                         ("DELETE", f"{api.base}/items/{item['id']}"), ("GET", api.base + "/export.jsonl"),
                         ("POST", api.base + "/items/retry"), ("DELETE", f"/api/v1/batch/workflows/{api.workflow}")]:
        status, body = await server.call(method, path, key=other)
        assert status == 404 and "not found" in body["message"], (method, path)
    assert (await server.call("GET", "/api/v1/batch/jobs", key=other))[1] == []
    assert len(await api.items()) == 1
