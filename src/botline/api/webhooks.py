"""Provider webhooks: POST /api/v1/webhooks/{integrationType}/{chatClientId}/{token}.

Order matters: the URL token, then the provider's own authenticity check on the raw bytes, then
parsing; only then is anything recorded. The answer (2xx) goes out once the messages are durably
recorded and before any model call. A disabled account's webhooks are authenticated and answered
200 (so the provider stops retrying), and their messages dropped, not recorded (docs/faults.md).
"""

from __future__ import annotations

import hmac
import time

import orjson
from aiohttp import web

from botline.api.http import ApiError, check_json_values, json_response
from botline.api.openapi import Access, JsonObject, documented
from botline.api.state import services
from botline.channels.base import WebhookRejected
from botline.domain.inbound import ChatKey
from botline.domain.integrations import IntegrationType, webhook_token
from botline.engine.inbound import CALL_SOURCES

routes = web.RouteTableDef()

UNKNOWN = "Not found."


@routes.post("/api/v1/webhooks/{integration_type}/{client_id}/{token}")
@documented(
    "Receive a provider's webhook; answered once recorded, before any model call.", access=Access.WEBHOOK,
    body=JsonObject,
)
async def receive(request: web.Request) -> web.Response:
    started = time.perf_counter()
    svc = services(request)
    try:
        kind = IntegrationType(request.match_info["integration_type"])
    except ValueError:
        raise ApiError(404, UNKNOWN) from None
    client = await svc.store.chat_clients.find(request.match_info["client_id"])
    account = None if client is None else await svc.accounts.get(client.account_id)
    integration = None if client is None else client.integrations.of(kind)
    if client is None or account is None or integration is None:
        raise ApiError(404, UNKNOWN)
    expected = webhook_token(account.salt, client.id, kind)
    if not hmac.compare_digest(expected.encode(), request.match_info["token"].encode()):
        raise ApiError(404, UNKNOWN)
    adapter = svc.channels.adapter(kind)
    body = await request.read()
    check_json_values(request, body)
    try:
        adapter.verify(integration, request.headers, body)
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message) from exc
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "The webhook body is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "The webhook body must be a JSON object.")
    parsed = adapter.parse(integration, payload)
    if await svc.accounts.active(account.id) is None:
        return json_response({"received": 0, "ignored": parsed.ignored + len(parsed.messages), "duplicates": 0})
    recorded = await svc.inbound.accept(client, kind, parsed.messages)
    for change in parsed.owners:  # Chatwoot's conversation opened or resolved: who answers the chat now
        await svc.handoff.provider_owner(client, ChatKey(client.account_id, client.id, kind, change.chat_id),
                                         change.owner)
    svc.metrics.webhook_ack_seconds(CALL_SOURCES[kind].channel).observe(time.perf_counter() - started)
    return json_response({"received": recorded, "ignored": parsed.ignored,
                          "duplicates": len(parsed.messages) - recorded})
