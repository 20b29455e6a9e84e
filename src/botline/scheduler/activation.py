"""What happens when a scheduled continuation fires: checks, the turn, delivery, the record.

A firing enters the engine like a message from the user would, but without a user message: the
model gets a system note ("[Scheduled continuation] reason... task... now...") after the history.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botline.channels.base import ChannelAdapter, DeliveryError
from botline.channels.kapso import KapsoAdapter, OutsideWindow
from botline.config import SchedulerSettings
from botline.domain.chat_clients import ChatClient
from botline.domain.clock import Clock
from botline.domain.conversations import Session
from botline.domain.inbound import ChatKey
from botline.domain.integrations import DEFAULT_SESSION_DURATION, IntegrationType, KapsoIntegration
from botline.domain.schedules import Activation, ActivationOutcome, ScheduledItem, ScheduleKind, ScheduleStatus
from botline.engine.chat import WITH_A_PERSON, ChatEngine, ChatRefused
from botline.engine.inbound import CALL_SOURCES, InboundEngine
from botline.engine.sessions import SessionService
from botline.gateway.caller import CallSource
from botline.gateway.errors import GatewayError
from botline.logs import bind_turn
from botline.metrics import Metrics
from botline.ratelimit import RateLimiter
from botline.scheduler.targets import INTEGRATION_OF
from botline.scheduler.timing import TimingError, missed_decision, next_occurrence
from botline.store.base import Store

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50
"""Activations kept per item (the newest)."""
HOUR_SECONDS = 3600


@dataclass
class _Result:
    outcome: ActivationOutcome
    text: str
    session_id: str | None = None


class ScheduleActivator:
    def __init__(
        self, store: Store, chat: ChatEngine, sessions: SessionService, inbound: InboundEngine,
        adapters: dict[IntegrationType, ChannelAdapter[Any]], clock: Clock, settings: SchedulerSettings, *,
        metrics: Metrics, limiter: RateLimiter,
    ) -> None:
        self._metrics = metrics
        self._limiter = limiter
        self._store = store
        self._chat = chat
        self._sessions = sessions
        self._inbound = inbound
        self._adapters = adapters
        self._clock = clock
        self._settings = settings

    async def activate(self, item: ScheduledItem, fire_time: datetime) -> None:
        bind_turn(CallSource.SCHEDULER.channel)  # this firing's task; chat.submit adds the session and gateway
        now = self._clock.now()
        if missed_decision(fire_time, now, timedelta(seconds=self._settings.misfire_grace_seconds)):
            self._metrics.lateness_seconds.observe(max((now - fire_time).total_seconds(), 0.0))
            result = await self._run(item, fire_time)
        else:
            result = _Result(ActivationOutcome.MISSED, f"missed: botline was not running at {fire_time.isoformat()}")
        await self._record(item, fire_time, now, result)
        self._metrics.activations(result.outcome.value).inc()
        log.info("schedule %s fired: %s", item.id, result.outcome.value)

    async def abandon(self, item: ScheduledItem, fire_time: datetime) -> None:
        fresh = await self._store.schedules.get(item.account_id, item.id)
        if fresh is not None and fresh.next_activation == fire_time:
            result = _Result(ActivationOutcome.FAILED, "failed: the replica firing it stopped; not retried, so that "
                             "it is never sent twice")
            await self._record(fresh, fire_time, self._clock.now(), result)
            self._metrics.activations(result.outcome.value).inc()

    async def _record(self, item: ScheduledItem, fire_time: datetime, now: datetime, result: _Result) -> None:
        item.history = [*item.history, Activation(fire_time=fire_time, at=now, outcome=result.outcome,
                                                  result=result.text, session_id=result.session_id)][-HISTORY_LIMIT:]
        item.activation_result = result.text
        if result.outcome is not ActivationOutcome.MISSED:
            item.activated_at = now
            item.activated_session_id = result.session_id or item.activated_session_id
            item.execution_count += 1
        if result.outcome is ActivationOutcome.DELIVERED:
            item.last_delivered_at = now
        item.last_activation = fire_time
        item.next_activation = self._next(item, fire_time, now)
        if item.next_activation is None:
            item.status = ScheduleStatus.DONE
        await self._store.schedules.update(item)

    @staticmethod
    def _next(item: ScheduledItem, fire_time: datetime, now: datetime) -> datetime | None:
        """A one-shot is done; a recurring task continues at its next occurrence after now (no catch-up burst)."""
        if item.kind is ScheduleKind.ONE_SHOT:
            return None
        if item.max_executions is not None and item.execution_count >= item.max_executions:
            return None
        try:
            return next_occurrence(item.cron_expression or "", item.timezone or "UTC", max(fire_time, now))
        except TimingError:
            return None

    async def _run(self, item: ScheduledItem, fire_time: datetime) -> _Result:
        client = await self._store.chat_clients.get(item.account_id, item.chat_client_id)
        if client is None:
            return _Result(ActivationOutcome.SKIPPED, "skipped: the chat client was deleted")
        if not client.client_parameters.allow_scheduled_continuations:
            return _Result(ActivationOutcome.SKIPPED, "skipped: scheduled continuations are turned off")
        kind = INTEGRATION_OF.get(item.target)
        integration = client.integrations.of(kind) if kind is not None else None
        if kind is not None and integration is None:
            return _Result(ActivationOutcome.SKIPPED, f"skipped: the {kind.value} integration was removed")
        if await self._user_was_active(client, item, fire_time):
            return _Result(ActivationOutcome.SKIPPED, "skipped: user active")
        session = await self._session(client, item, integration)
        if session is None:
            return _Result(ActivationOutcome.FAILED, "failed: the web chat session has ended")
        if session.handoff is not None and session.handoff.is_human(self._clock.now()):
            # The person talking to the user decides what is said; a recurring task goes on at its next time.
            return _Result(ActivationOutcome.SKIPPED, f"skipped: {WITH_A_PERSON}", session.id)
        if not await self._within_budget(item):
            budget = self._settings.continuations_per_user_per_hour
            return _Result(ActivationOutcome.SKIPPED, f"skipped: this user's budget of {budget} scheduled "
                           "continuations per hour is used up", session.id)
        source = CALL_SOURCES[kind] if kind is not None else CallSource.WEB_CHAT
        try:
            turn = await self._chat.submit(session, client, None, None, source=source, note=self._note(item, client))
            outcome = await asyncio.shield(turn.task)
        except ChatRefused as exc:
            return _Result(ActivationOutcome.SKIPPED, f"skipped: {exc.message}", session.id)
        except GatewayError as exc:
            return _Result(ActivationOutcome.FAILED, f"failed: {exc.message}", session.id)
        text = outcome.message.content if isinstance(outcome.message.content, str) else ""
        if kind is None or integration is None:  # stored in the web chat session: its open pages show it now
            await self._chat.live.announce(session.id)
            return _Result(ActivationOutcome.DELIVERED, text, session.id)
        chat = ChatKey(client.account_id, client.id, kind, item.target_identifier)
        error = await self._inbound.deliver(chat, client, integration, text, session=session)
        if isinstance(error, OutsideWindow) and isinstance(integration, KapsoIntegration):
            return await self._template(integration, item, text, session)
        if error is not None:
            return _Result(ActivationOutcome.FAILED, f"failed: {error.message}", session.id)
        return _Result(ActivationOutcome.DELIVERED, text, session.id)

    async def _template(self, integration: KapsoIntegration, item: ScheduledItem, text: str,
                        session: Session) -> _Result:
        """WhatsApp Cloud outside the 24-hour window: only an approved template may be sent."""
        template = integration.continued_messages_template_id
        if not template:
            return _Result(ActivationOutcome.FAILED, "failed: outside WhatsApp's 24-hour window and no "
                           "continuedMessagesTemplateId is configured", session.id)
        adapter = self._adapters[IntegrationType.KAPSO]
        assert isinstance(adapter, KapsoAdapter)
        try:
            await adapter.send_template(integration, item.target_identifier, template, text)
        except DeliveryError as exc:
            return _Result(ActivationOutcome.FAILED, f"failed: {exc.message}", session.id)
        return _Result(ActivationOutcome.DELIVERED, text, session.id)

    async def _within_budget(self, item: ScheduledItem) -> bool:
        """Counts this firing against the user's hourly budget (in the Store, shared by replicas): however
        many recurring tasks a user holds, their continuations cost at most that many model turns an hour."""
        budget = self._settings.continuations_per_user_per_hour
        if not budget:
            return True
        scope = f"continuations:{item.chat_client_id}:{item.external_user_id}"
        return await self._limiter.hit(scope, limit=budget, window_seconds=HOUR_SECONDS) is None

    async def _user_was_active(self, client: ChatClient, item: ScheduledItem, fire_time: datetime) -> bool:
        """maxScheduledIgnoredZone: the user wrote after the item was made, within the zone before firing."""
        zone = client.client_parameters.max_scheduled_ignored_zone
        if not zone:
            return False
        session = await self._store.sessions.get_by_tag(client.account_id, client.id, item.external_user_id)
        last = session.last_user_message_at if session else None
        return last is not None and last > item.created_at and last >= fire_time - zone

    async def _session(self, client: ChatClient, item: ScheduledItem, integration: Any) -> Session | None:
        if integration is None:
            session = await self._store.sessions.get(client.account_id, item.target_identifier)
            return session if session is not None and session.is_live(self._clock.now()) else None
        lifetime = integration.session_duration or DEFAULT_SESSION_DURATION
        return await self._sessions.for_channel(client, tag=item.external_user_id, lifetime=lifetime)

    def _note(self, item: ScheduledItem, client: ChatClient) -> str:
        zone_name = item.timezone or client.client_parameters.timezone or "UTC"
        local = self._clock.now().astimezone(ZoneInfo(zone_name)).replace(microsecond=0)
        parts = [f"[Scheduled continuation] reason: {item.reason}"]
        if item.context:
            parts.append(f"context: {item.context}")
        if item.job_description:
            parts.append(f"task: {item.job_description}")
        parts.append(f"now: {local.isoformat()} ({zone_name})")
        parts.append("Write the message to send to the user now.")
        return " ".join(parts)
