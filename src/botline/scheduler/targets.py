"""Where a continuation is delivered, derived from the conversation that scheduled it."""

from __future__ import annotations

from botline.domain.integrations import IntegrationType
from botline.domain.schedules import ScheduleTarget
from botline.gateway.caller import Caller, CallSource

INTEGRATION_OF: dict[ScheduleTarget, IntegrationType] = {
    ScheduleTarget.TELEGRAM: IntegrationType.TELEGRAM,
    ScheduleTarget.ZAPI: IntegrationType.ZAPI,
    ScheduleTarget.EVOLUTION: IntegrationType.EVOLUTION,
    ScheduleTarget.KAPSO: IntegrationType.KAPSO,
}
TARGET_OF_SOURCE: dict[CallSource, ScheduleTarget] = {
    CallSource.TELEGRAM: ScheduleTarget.TELEGRAM,
    CallSource.ZAPI: ScheduleTarget.ZAPI,
    CallSource.EVOLUTION: ScheduleTarget.EVOLUTION,
    CallSource.KAPSO: ScheduleTarget.KAPSO,
    CallSource.WEB_CHAT: ScheduleTarget.WEB_CHAT,
}


def target_of(caller: Caller) -> tuple[ScheduleTarget, str] | None:
    """(target, targetIdentifier) from the session, never from the model; None when undeliverable."""
    target = TARGET_OF_SOURCE.get(caller.call_source)
    if target is None or caller.chat_client_id is None:
        return None
    if target is ScheduleTarget.WEB_CHAT:
        return (target, caller.session_id) if caller.session_id else None
    prefix = f"{INTEGRATION_OF[target].value}:"
    user = caller.external_user_id or ""
    return (target, user.removeprefix(prefix)) if user.startswith(prefix) else None
