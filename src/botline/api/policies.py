"""AI policies under /api/v1/policy, in Flashback's shapes and envelopes (docs/governance.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from botline.api.http import ApiError, json_response, query_int, query_text, read_model
from botline.api.llm_connections import flashback
from botline.api.openapi import documented
from botline.api.state import Services, principal, services
from botline.domain.accounts import GovernanceParameters
from botline.domain.policies import Policy, PolicyBody, PolicyPatch, RiskType, ViolationQuery
from botline.store.changes import AccountChange, PolicyChange

routes = web.RouteTableDef()
BASE = "/api/v1/policy"
TAKE_MAX = 100
TAKE_DEFAULT = 50
LIST_QUERY = {
    "from": "ISO 8601: not before.", "to": "ISO 8601: not after.", "skip": "Default 0.",
    "take": f"Default {TAKE_DEFAULT}, at most {TAKE_MAX}.", "severity": "LOW, MEDIUM, HIGH (comma-separated).",
    "block": "true or false.", "policyId": "One policy's only.",
}


async def _owned(request: web.Request) -> Policy:
    policy = await services(request).store.policies.get(principal(request).account.id, request.match_info["id"])
    if policy is None:
        raise ApiError(404, "Policy not found.")
    return policy


async def _check_scope(svc: Services, account_id: str, body: PolicyBody) -> None:
    if body.ai_gateway_id and body.chat_client_id:
        raise ApiError(400, "Invalid value for chatClientId: a policy applies to the account, one gateway or one "
                            "chat client, not both.")
    if body.ai_gateway_id and await svc.store.gateways.get(account_id, body.ai_gateway_id) is None:
        raise ApiError(400, "Invalid value for aiGatewayId: no such AI gateway in this account.")
    if body.chat_client_id and await svc.store.chat_clients.get(account_id, body.chat_client_id) is None:
        raise ApiError(400, "Invalid value for chatClientId: no such chat client in this account.")


@routes.post(BASE)
@documented("Create an AI policy: a rule in plain language the judge checks every turn in scope against.",
            body=PolicyBody)
@flashback
async def create(request: web.Request) -> web.Response:
    body = await read_model(request, PolicyBody)
    svc, account_id = services(request), principal(request).account.id
    await _check_scope(svc, account_id, body)
    policy = Policy(account_id=account_id, name=body.name, content=body.content, risk_type=body.risk_type,
                    action_type=body.action_type, ai_gateway_id=body.ai_gateway_id, chat_client_id=body.chat_client_id)
    await svc.store.policies.create(policy)
    await svc.policies.forget(account_id)
    return json_response({"success": True, "policy": policy.view(), "message": "Policy created."})


@routes.get(BASE)
@documented("List the account's AI policies.", query={
    "aiGatewayId": "Only policies of this gateway.", "chatClientId": "Only policies of this chat client.",
    "riskType": "LOW, MEDIUM or HIGH."})
@flashback
async def list_policies(request: web.Request) -> web.Response:
    gateway, client = query_text(request, "aiGatewayId"), query_text(request, "chatClientId")
    risk = query_text(request, "riskType").upper()
    found = [p for p in await services(request).store.policies.list_for_account(principal(request).account.id)
             if (not gateway or p.ai_gateway_id == gateway) and (not client or p.chat_client_id == client)
             and (not risk or p.risk_type.value == risk)]
    return json_response({"success": True, "policies": [p.view() for p in found]})


def _time(request: web.Request, name: str) -> datetime | None:
    raw = query_text(request, name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Query parameter {name} must be an ISO 8601 date and time.") from None
    if moment.tzinfo is None:
        raise ApiError(400, f"Query parameter {name} must carry a time zone (e.g. Z).")
    return moment


def _query(request: web.Request, *, policy_id: str | None, alerts_only: bool) -> ViolationQuery:
    take, skip = query_int(request, "take", TAKE_DEFAULT), query_int(request, "skip", 0)
    if not 1 <= take <= TAKE_MAX or skip < 0:
        raise ApiError(400, f"Query parameters take must be 1 to {TAKE_MAX} and skip at least 0.")
    severity = None
    if raw := query_text(request, "severity"):
        try:
            severity = frozenset(RiskType(level.strip().upper()) for level in raw.split(","))
        except ValueError:
            raise ApiError(400, "Query parameter severity must list LOW, MEDIUM or HIGH.") from None
    block_text = query_text(request, "block").lower()
    if block_text not in ("", "true", "false"):
        raise ApiError(400, "Query parameter block must be true or false.")
    return ViolationQuery(
        policy_id=policy_id or query_text(request, "policyId") or None, since=_time(request, "from"),
        until=_time(request, "to"), severity=severity, block=None if not block_text else block_text == "true",
        alerts_only=alerts_only, skip=skip, take=take,
    )


async def _listed(request: web.Request, *, policy_id: str | None, alerts: bool) -> web.Response:
    query = _query(request, policy_id=policy_id, alerts_only=alerts)
    found, total = await services(request).store.policies.violations(principal(request).account.id, query)
    items: list[dict[str, Any]] = [v.alert_view() if alerts else v.view() for v in found]
    return json_response({"success": True, "alerts" if alerts else "violations": items, "total": total,
                          "skip": query.skip, "take": query.take})


@routes.get(f"{BASE}/violations")
@documented("Violations of every policy, newest first.", query=LIST_QUERY)
@flashback
async def violations(request: web.Request) -> web.Response:
    return await _listed(request, policy_id=None, alerts=False)


@routes.get(f"{BASE}/alerts")
@documented("Alerts (violations of alert- and block-level policies), newest first.", query=LIST_QUERY)
@flashback
async def alerts(request: web.Request) -> web.Response:
    return await _listed(request, policy_id=None, alerts=True)


def _settings_view(governance: GovernanceParameters) -> web.Response:
    return json_response({"success": True, "settings": governance.wire()})


@routes.get(f"{BASE}/settings")
@documented("The account's governance settings: alert webhook, judge connection and model, input check mode.")
@flashback
async def settings(request: web.Request) -> web.Response:
    account = await services(request).accounts.get(principal(request).account.id)
    return _settings_view(GovernanceParameters() if account is None else account.parameters.governance)


@routes.put(f"{BASE}/settings")
@documented("Change the account's governance settings: the fields given replace the stored ones, null clears one.",
            body=GovernanceParameters)
@flashback
async def change_settings(request: web.Request) -> web.Response:
    body = await read_model(request, GovernanceParameters)
    svc, account_id = services(request), principal(request).account.id
    if body.judge_connection_id is not None and \
            await svc.store.llm_connections.get(account_id, body.judge_connection_id) is None:
        raise ApiError(400, "Invalid value for judgeConnectionId: no such LLM connection in this account.")
    account = await svc.store.accounts.get(account_id)
    if account is None:
        raise ApiError(404, "Account not found.")
    governance = account.parameters.governance.model_copy(
        update={name: getattr(body, name) for name in body.model_fields_set})
    parameters = account.parameters.model_copy(update={"governance": governance})
    if await svc.store.accounts.change(account_id, AccountChange(parameters=parameters)) is None:
        raise ApiError(404, "Account not found.")
    await svc.accounts.forget(account_id)
    return _settings_view(governance)


@routes.get(f"{BASE}/{{id}}")
@documented("View an AI policy.")
@flashback
async def view(request: web.Request) -> web.Response:
    return json_response({"success": True, "policy": (await _owned(request)).view()})


@routes.get(f"{BASE}/{{id}}/violations")
@documented("One policy's violations, newest first.", query=LIST_QUERY)
@flashback
async def policy_violations(request: web.Request) -> web.Response:
    return await _listed(request, policy_id=(await _owned(request)).id, alerts=False)


@routes.get(f"{BASE}/{{id}}/alerts")
@documented("One policy's alerts, newest first.", query=LIST_QUERY)
@flashback
async def policy_alerts(request: web.Request) -> web.Response:
    return await _listed(request, policy_id=(await _owned(request)).id, alerts=True)


@routes.put(f"{BASE}/{{id}}")
@documented("Change a policy's name, content, riskType or actionType (the scope is fixed).", body=PolicyPatch)
@flashback
async def update(request: web.Request) -> web.Response:
    stored = await _owned(request)
    patch = await read_model(request, PolicyPatch)
    svc = services(request)
    values = {**patch.model_dump(exclude_unset=True, exclude_none=True), "updated_at": svc.clock.now()}
    changed = await svc.store.policies.change(stored.account_id, stored.id, PolicyChange(values))
    if changed is None:
        raise ApiError(404, "Policy not found.")
    await svc.policies.forget(stored.account_id)
    return json_response({"success": True, "policy": changed.view(), "message": "Policy updated."})


@routes.delete(f"{BASE}/{{id}}")
@documented("Delete a policy (its recorded violations stay).")
@flashback
async def delete(request: web.Request) -> web.Response:
    svc, account_id = services(request), principal(request).account.id
    if not await svc.store.policies.delete(account_id, request.match_info["id"]):
        raise ApiError(404, "Policy not found.")
    await svc.policies.forget(account_id)
    return json_response({"success": True, "message": "Policy deleted."})
