"""The tools the model gets to schedule continuations, and the extension that offers them.

Offered only when the chat client has allowScheduledContinuations and the conversation has a
deliverable target. The target and the external user id come from the session, never from the
model's arguments; every tool only sees the current user's items.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson

from botline.config import SchedulerSettings
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway
from botline.domain.schedules import ScheduledItem, ScheduleKind, ScheduleTarget
from botline.engine.client_cache import ChatClientCache
from botline.gateway.caller import Caller
from botline.gateway.extensions import Contribution
from botline.gateway.tools import Tool, ToolFailure, ToolSpec, function_spec
from botline.scheduler.service import Scheduler
from botline.scheduler.targets import target_of
from botline.scheduler.timing import TimingError, next_occurrence, parse_when, shortest_interval, validate_cron, zone
from botline.store.base import Store

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You can schedule follow-ups for this user: schedule_message for a one-time message (a time with its UTC "
    "offset, or a delay in seconds), schedule_recurring_task for a repeating one (5-field cron in the user's "
    "time zone), list_schedules and cancel_schedule. When one fires you will be asked to write the message "
    "then. Only schedule what the user asked for or agreed to."
)


class _Scope:
    """Everything a scheduling tool call is allowed to touch."""

    def __init__(self, caller: Caller, target: ScheduleTarget, identifier: str, default_zone: str) -> None:
        assert caller.chat_client_id is not None
        self.account_id = caller.account_id
        self.client_id = caller.chat_client_id
        self.user = caller.external_user_id or f"session:{caller.session_id}"
        self.target = target
        self.identifier = identifier
        self.default_zone = default_zone


class _ScheduleTool(Tool):
    def __init__(self, scope: _Scope, store: Store, scheduler: Scheduler, clock: Clock,
                 settings: SchedulerSettings) -> None:
        self._scope = scope
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        self._settings = settings

    async def _mine(self) -> list[ScheduledItem]:
        items = await self._store.schedules.list_for_client(self._scope.account_id, self._scope.client_id)
        return [i for i in items if i.external_user_id == self._scope.user and i.active]

    async def _create(self, item: ScheduledItem) -> None:
        if len(await self._mine()) >= self._settings.max_active_per_user:
            raise ToolFailure(f"This user already has {self._settings.max_active_per_user} active schedules; "
                              "cancel one first.")
        await self._store.schedules.create(item)
        self._scheduler.plan(item)

    def _item(self, kind: ScheduleKind, **fields: Any) -> ScheduledItem:
        return ScheduledItem(
            kind=kind, account_id=self._scope.account_id, chat_client_id=self._scope.client_id,
            external_user_id=self._scope.user, target=self._scope.target, target_identifier=self._scope.identifier,
            created_at=self._clock.now(), **fields,
        )


def _text(arguments: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = arguments.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ToolFailure(f"{name} must be a non-empty string.")
    return value.strip()


def _json(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


class ScheduleMessage(_ScheduleTool):
    name = "schedule_message"

    def spec(self) -> ToolSpec:
        return function_spec(self.name, "Schedule one follow-up message to this user at a later time.", {
            "type": "object",
            "properties": {
                "when": {"type": "string", "description": "ISO-8601 date and time with UTC offset"},
                "delaySeconds": {"type": "integer", "description": "seconds from now (instead of when)"},
                "reason": {"type": "string", "description": "why this follow-up exists"},
                "context": {"type": "string", "description": "what you will need to know then"},
            },
            "required": ["reason"],
        })

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        now = self._clock.now()
        when, delay = arguments.get("when"), arguments.get("delaySeconds")
        if (when is None) == (delay is None):
            raise ToolFailure("Give exactly one of when or delaySeconds.")
        try:
            if when is not None:
                fire = parse_when(str(when), now)
            elif isinstance(delay, int) and not isinstance(delay, bool):
                fire = now + timedelta(seconds=delay)
            else:
                raise ToolFailure("delaySeconds must be an integer.")
        except TimingError as exc:
            raise ToolFailure(str(exc)) from None
        ahead = (fire - now).total_seconds()
        if ahead < self._settings.min_delay_seconds:
            raise ToolFailure(f"The time must be at least {int(self._settings.min_delay_seconds)} seconds ahead.")
        if ahead > self._settings.max_delay_days * 86400:
            raise ToolFailure(f"The time must be within {int(self._settings.max_delay_days)} days.")
        item = self._item(ScheduleKind.ONE_SHOT, reason=_text(arguments, "reason"),
                          context=_text(arguments, "context", required=False), scheduled_time=fire,
                          next_activation=fire)
        await self._create(item)
        return _json({"id": item.id, "scheduledTime": fire.isoformat()})


class ScheduleRecurringTask(_ScheduleTool):
    name = "schedule_recurring_task"

    def spec(self) -> ToolSpec:
        return function_spec(self.name, "Schedule a repeating task for this user (cron, in a time zone).", {
            "type": "object",
            "properties": {
                "cronExpression": {"type": "string", "description": "5-field cron: minute hour day month weekday"},
                "timezone": {"type": "string", "description": "IANA time zone; default the chat's"},
                "jobDescription": {"type": "string", "description": "what to do each time it fires"},
                "reason": {"type": "string"},
                "maxExecutions": {"type": "integer", "minimum": 1},
            },
            "required": ["cronExpression", "jobDescription", "reason"],
        })

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        expression = _text(arguments, "cronExpression") or ""
        tz_name = _text(arguments, "timezone", required=False) or self._scope.default_zone
        max_executions = arguments.get("maxExecutions")
        if max_executions is not None and (not isinstance(max_executions, int) or max_executions < 1):
            raise ToolFailure("maxExecutions must be a positive integer.")
        now = self._clock.now()
        try:
            validate_cron(expression, allow_seconds=self._settings.allow_seconds_in_cron)
            zone(tz_name)
            first = next_occurrence(expression, tz_name, now)
            interval = shortest_interval(expression, tz_name, now)
        except TimingError as exc:
            raise ToolFailure(str(exc)) from None
        if interval.total_seconds() < self._settings.min_cron_interval_seconds:
            minutes = int(self._settings.min_cron_interval_seconds // 60)
            raise ToolFailure(f"A recurring task may fire at most every {minutes} minutes.")
        item = self._item(
            ScheduleKind.RECURRING, reason=_text(arguments, "reason"), cron_expression=expression, timezone=tz_name,
            job_description=_text(arguments, "jobDescription"), max_executions=max_executions, next_activation=first,
        )
        await self._create(item)
        return _json({"id": item.id, "nextActivation": first.isoformat()})


class ListSchedules(_ScheduleTool):
    name = "list_schedules"

    def spec(self) -> ToolSpec:
        return function_spec(self.name, "List this user's pending schedules and recurring tasks.",
                             {"type": "object", "properties": {}})

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        items = await self._mine()
        return _json({"items": [
            {"id": i.id, "kind": i.kind.value, "reason": i.reason, "nextActivation": i.wire()["nextActivation"],
             "cronExpression": i.cron_expression, "timezone": i.timezone, "jobDescription": i.job_description}
            for i in items
        ]})


class CancelSchedule(_ScheduleTool):
    name = "cancel_schedule"

    def spec(self) -> ToolSpec:
        return function_spec(self.name, "Cancel one of this user's schedules or recurring tasks by id.", {
            "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        item_id = _text(arguments, "id") or ""
        if item_id not in {i.id for i in await self._mine()}:
            raise ToolFailure(f"No active schedule {item_id} for this user.")
        await self._store.schedules.delete(self._scope.account_id, item_id)
        self._scheduler.forget(item_id)
        return _json({"id": item_id, "cancelled": True})


class ScheduleExtension:
    """The TurnExtension that offers the four scheduling tools where they apply."""

    def __init__(
        self, store: Store, scheduler: Scheduler, clock: Clock, settings: SchedulerSettings, *, clients: ChatClientCache
    ) -> None:
        self._store = store
        self._clients = clients
        self._scheduler = scheduler
        self._clock = clock
        self._settings = settings

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        target = target_of(caller)
        if target is None or caller.chat_client_id is None:
            return Contribution()
        client = await self._clients.get(caller.account_id, caller.chat_client_id)
        if client is None or not client.client_parameters.allow_scheduled_continuations:
            return Contribution()
        scope = _Scope(caller, *target, default_zone=client.client_parameters.timezone or "UTC")
        tools: list[Tool] = [
            tool(scope, self._store, self._scheduler, self._clock, self._settings)
            for tool in (ScheduleMessage, ScheduleRecurringTask, ListSchedules, CancelSchedule)
        ]
        return Contribution(instructions=[INSTRUCTIONS], tools=tools)
