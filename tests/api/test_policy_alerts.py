"""Policy alerts pushed to the account's alert webhook: signed with the account's hook key, retried,
and delivered once per violation (even when a second sender, another replica, tries the same one).

Each test runs its own server and stops it before counting, so every delivery task has ended."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest

from botline.account_cache import AccountCache
from botline.app import EGRESS, STORE
from botline.config import GovernanceSettings
from botline.domain.clock import SystemClock
from botline.domain.policies import ViolationQuery
from botline.governance.alerts import AlertSender
from botline.metrics import Metrics
from tests.api.test_policies import CLEAN, LEAK, REFUSAL, add_policy, ask, verdict
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.callback_server import Answer, CallbackServer, Received
from tests.support.server import RunningServer, make_settings, running_server

HOOK = "/alerts"


def settings(tmp_path: Path) -> Any:
    return make_settings(f"sqlite:///{tmp_path / 'botline.db'}", governance={"alert_backoff_seconds": 0})


async def point_alerts_at(server: RunningServer, site: CallbackServer, *answers: Answer) -> str:
    """Sets the account's alert webhook; returns the account's hook key (its salt)."""
    status, body = await server.call("PUT", "/api/v1/policy/settings",
                                     json={"alertWebhookUrl": site.answer(HOOK, *(answers or (Answer(),)))})
    assert status == 200 and body["settings"]["alertWebhookUrl"].endswith(HOOK), body
    return str((await server.call("GET", "/api/v1/accounts/api-key"))[1]["salt"])


def signed(delivery: Received, hook_key: str) -> bool:
    timestamp = delivery.headers["X-Botline-Timestamp"]
    expected = hmac.new(hook_key.encode(), timestamp.encode() + b"." + delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(delivery.headers["X-Botline-Signature"], f"sha256={expected}")


@pytest.mark.parametrize("action", [1, 2], ids=["alert", "block"])
async def test_a_violation_alerts_the_webhook_once_with_a_valid_signature(
    tmp_path: Path, fake_llm: FakeLLM, action: int,
) -> None:
    async with CallbackServer() as site:
        async with running_server(settings(tmp_path)) as server:
            hook_key = await point_alerts_at(server, site)
            gateway = await create_gateway(server, fake_llm)
            policy = await add_policy(server, action)
            fake_llm.script(Reply(text=LEAK))
            fake_llm.script_judge(CLEAN, verdict(1))
            status, body = await ask(server, gateway)
            assert status == 200 and body["choices"][0]["message"]["content"] == (REFUSAL if action == 2 else LEAK)
            [violation] = (await server.call("GET", "/api/v1/policy/violations"))[1]["violations"]
        [delivery] = site.received_at(HOOK)
    assert signed(delivery, hook_key) and not signed(delivery, "another key")
    assert delivery.headers["X-Botline-Event"] == "policy.alert"
    assert delivery.headers["X-Botline-Delivery"] == violation["id"]
    sent = orjson.loads(delivery.body)
    assert sent["id"] == violation["id"] and sent["violation"] == violation
    assert sent["violation"]["policyId"] == policy and sent["violation"]["block"] is (action == 2)
    assert "SAVE50" not in delivery.body.decode()  # the explanation, not the blocked text


async def test_an_alert_is_retried_after_a_failure_and_delivered_once_even_when_sent_twice(
    tmp_path: Path, fake_llm: FakeLLM,
) -> None:
    async with CallbackServer() as site:
        async with running_server(settings(tmp_path)) as server:
            hook_key = await point_alerts_at(server, site, Answer(status=503), Answer(status=200))
            gateway = await create_gateway(server, fake_llm)
            await add_policy(server, 1)
            fake_llm.script(Reply(text=LEAK))
            fake_llm.script_judge(CLEAN, verdict(1))
            status, body = await ask(server, gateway)
            assert status == 200 and body["choices"][0]["message"]["content"] == LEAK  # alert does not block
            assert server.app is not None
            store = server.app[STORE]
            account_id = (await store.accounts.list())[0].id
            [[violation], _] = await store.policies.violations(account_id, ViolationQuery(alerts_only=True))
            replica = AlertSender(store, server.app[EGRESS], AccountCache(store, ttl=60),
                                  GovernanceSettings(alert_backoff_seconds=0), Metrics(), SystemClock())
            await replica.deliver(violation)  # another replica sending the same violation
        attempts = site.received_at(HOOK)
    assert [a.headers["X-Botline-Delivery"] for a in attempts] == [violation.id, violation.id]
    assert all(signed(attempt, hook_key) for attempt in attempts)
    assert len({attempt.body for attempt in attempts}) == 1


async def test_log_only_rules_and_accounts_without_a_webhook_send_nothing(
    tmp_path: Path, fake_llm: FakeLLM,
) -> None:
    async with CallbackServer() as site:
        async with running_server(settings(tmp_path)) as server:
            gateway = await create_gateway(server, fake_llm)
            await add_policy(server, 1)  # alert-level, but no webhook set yet
            fake_llm.script(Reply(text=LEAK))
            fake_llm.script_judge(CLEAN, verdict(1))
            assert (await ask(server, gateway))[0] == 200
            await point_alerts_at(server, site)
            _status, body = await server.call("GET", "/api/v1/policy")
            assert (await server.call("PUT", f"/api/v1/policy/{body['policies'][0]['id']}",
                                      json={"actionType": 0}))[0] == 200
            fake_llm.script(Reply(text=LEAK))
            fake_llm.script_judge(CLEAN, verdict(1))
            assert (await ask(server, gateway))[0] == 200
            assert (await server.call("GET", "/api/v1/policy/violations"))[1]["total"] == 2
        assert site.received_at(HOOK) == []


async def test_settings_refuse_a_bad_url_and_an_unknown_judge_connection(server: RunningServer) -> None:
    status, body = await server.call("PUT", "/api/v1/policy/settings", json={"alertWebhookUrl": "ftp://x"})
    assert status == 400 and body["success"] is False and "alertWebhookUrl" in body["message"]
    status, body = await server.call("PUT", "/api/v1/policy/settings", json={"judgeConnectionId": "nope"})
    assert status == 400 and "judgeConnectionId" in body["message"]
    status, body = await server.call("PUT", "/api/v1/policy/settings", json={"inputCheck": "sometimes"})
    assert status == 400 and "inputCheck" in body["message"]
    status, body = await server.call("GET", "/api/v1/policy/settings")
    assert status == 200 and body["settings"] == {"alertWebhookUrl": None, "judgeConnectionId": None,
                                                  "judgeModel": None, "inputCheck": None}
