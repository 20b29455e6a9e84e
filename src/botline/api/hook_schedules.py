"""Hook schedules of a chat client (seed section "Hook Schedules"): what the assistant scheduled."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from botline.api.http import json_response, message_response, not_found, query_text
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import principal, services
from botline.domain.chat_clients import ChatClient
from botline.domain.schedules import ScheduledItem, ScheduleKind

routes = web.RouteTableDef()
BASE = "/api/v1/web-chat-clients/{id}/hook-schedules"


async def _owned(request: web.Request) -> ChatClient:
    client = await services(request).store.chat_clients.get(principal(request).account.id, request.match_info["id"])
    if client is None:
        raise not_found("Web chat client")
    return client


def _when(item: ScheduledItem, field: str) -> Any:
    return item.wire()[field]


def schedule_summary(item: ScheduledItem) -> dict[str, Any]:
    return {"id": item.id, "externalUserId": item.external_user_id, "target": item.target.value,
            "targetIdentifier": item.target_identifier, "scheduledTime": _when(item, "scheduledTime"),
            "activatedAt": _when(item, "activatedAt"), "createdAt": _when(item, "createdAt")}


def schedule_detail(item: ScheduledItem) -> dict[str, Any]:
    return {**schedule_summary(item), "reason": item.reason, "context": item.context,
            "activatedSessionId": item.activated_session_id, "activationResult": item.activation_result,
            "status": item.status.value, "history": [h.wire() for h in item.history]}


def task_summary(item: ScheduledItem) -> dict[str, Any]:
    return {"id": item.id, "externalUserId": item.external_user_id, "target": item.target.value,
            "targetIdentifier": item.target_identifier, "cronExpression": item.cron_expression,
            "nextActivation": _when(item, "nextActivation"), "lastActivation": _when(item, "lastActivation"),
            "executionCount": item.execution_count, "createdAt": _when(item, "createdAt")}


def task_detail(item: ScheduledItem) -> dict[str, Any]:
    return {**task_summary(item), "jobDescription": item.job_description, "timezone": item.timezone,
            "maxExecutions": item.max_executions, "reason": item.reason,
            "activatedAt": _when(item, "activatedAt"), "activatedSessionId": item.activated_session_id,
            "activationResult": item.activation_result, "status": item.status.value,
            "history": [h.wire() for h in item.history]}


@routes.get(BASE)
@documented(
    "What the assistant scheduled for a web chat client's users.",
    query={"external-user-id": "Only this user's items."},
)
async def list_hook_schedules(request: web.Request) -> web.Response:
    """inactiveUsers: users whose last delivered continuation is newer than their last message."""
    client = await _owned(request)
    svc = services(request)
    user = query_text(request, "external-user-id") or None
    items = [i for i in await svc.store.schedules.list_for_client(client.account_id, client.id)
             if user is None or i.external_user_id == user]
    last_delivery: dict[str, Any] = {}
    for item in items:
        if item.last_delivered_at and (item.external_user_id not in last_delivery
                                       or item.last_delivered_at > last_delivery[item.external_user_id]):
            last_delivery[item.external_user_id] = item.last_delivered_at
    inactive = []
    for external_user_id, delivered in sorted(last_delivery.items()):
        session = await svc.store.sessions.get_by_tag(client.account_id, client.id, external_user_id)
        wrote = session.last_user_message_at if session else None
        if wrote is None or delivered > wrote:
            inactive.append({"externalUserId": external_user_id, "lastScheduledMessageAt": delivered.isoformat(),
                             "lastUserMessageAt": wrote.isoformat() if wrote else None})
    return json_response({
        "webChat": {"id": client.id, "name": client.name},
        "inactiveUsers": inactive,
        "schedules": [schedule_summary(i) for i in items if i.kind is ScheduleKind.ONE_SHOT],
        "recurringTasks": [task_summary(i) for i in items if i.kind is ScheduleKind.RECURRING],
    })


async def _item(request: web.Request, kind: ScheduleKind) -> ScheduledItem:
    client = await _owned(request)
    item = await services(request).store.schedules.get(client.account_id, request.match_info["item_id"])
    if item is None or item.kind is not kind or item.chat_client_id != client.id:
        raise not_found("Recurring task" if kind is ScheduleKind.RECURRING else "Schedule")
    return item


@routes.get(BASE + "/schedules/{item_id}")
@documented("View a one-shot schedule.")
async def get_schedule(request: web.Request) -> web.Response:
    return json_response(schedule_detail(await _item(request, ScheduleKind.ONE_SHOT)))


@routes.get(BASE + "/recurring/{item_id}")
@documented("View a recurring task.")
async def get_task(request: web.Request) -> web.Response:
    return json_response(task_detail(await _item(request, ScheduleKind.RECURRING)))


async def _cancel(request: web.Request, kind: ScheduleKind) -> web.Response:
    item = await _item(request, kind)
    svc = services(request)
    await svc.store.schedules.delete(item.account_id, item.id)
    svc.scheduler.forget(item.id)
    return message_response("Recurring task cancelled." if kind is ScheduleKind.RECURRING else "Schedule cancelled.")


@routes.delete(BASE + "/schedules/{item_id}")
@documented("Cancel a one-shot schedule.", answer=MessageAnswer)
async def cancel_schedule(request: web.Request) -> web.Response:
    return await _cancel(request, ScheduleKind.ONE_SHOT)


@routes.delete(BASE + "/recurring/{item_id}")
@documented("Cancel a recurring task.", answer=MessageAnswer)
async def cancel_task(request: web.Request) -> web.Response:
    return await _cancel(request, ScheduleKind.RECURRING)
