"""Scheduled continuations: one-shot schedules and cron-based recurring tasks, as plain data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow


class ScheduleKind(StrEnum):
    ONE_SHOT = "schedule"
    RECURRING = "recurring"


class ScheduleTarget(StrEnum):
    TELEGRAM = "Telegram"
    ZAPI = "WhatsApp_ZApi"
    EVOLUTION = "WhatsApp_Evolution"
    KAPSO = "WhatsApp_Kapso"
    WEB_CHAT = "WebChat"


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"


class ActivationOutcome(StrEnum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    MISSED = "missed"
    FAILED = "failed"


class Activation(CamelModel):
    """One firing: when it was due, what happened."""

    fire_time: datetime
    at: datetime
    outcome: ActivationOutcome
    result: str
    session_id: str | None = None


class ScheduledItem(CamelModel):
    """A one-shot schedule (scheduledTime) or a recurring task (cronExpression + timezone)."""

    id: str = Field(default_factory=new_id)
    kind: ScheduleKind
    account_id: str
    chat_client_id: str
    external_user_id: str
    target: ScheduleTarget
    target_identifier: str
    reason: str
    context: str | None = None
    scheduled_time: datetime | None = None
    cron_expression: str | None = None
    timezone: str | None = None
    job_description: str | None = None
    max_executions: int | None = None
    execution_count: int = 0
    next_activation: datetime | None = None
    """When it fires next (UTC); None once done."""
    last_activation: datetime | None = None
    activated_at: datetime | None = None
    activated_session_id: str | None = None
    activation_result: str | None = None
    last_delivered_at: datetime | None = None
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    history: list[Activation] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def active(self) -> bool:
        return self.status is ScheduleStatus.ACTIVE and self.next_activation is not None
