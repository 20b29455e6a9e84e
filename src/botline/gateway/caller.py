"""Who a turn is for: the identity and origin passed to tools, callbacks and usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from botline.domain.accounts import UsageLimits


class CallSource(StrEnum):
    WEB_CHAT = "WebChatClient"
    TELEGRAM = "Telegram"
    ZAPI = "WhatsApp_ZApi"
    EVOLUTION = "WhatsApp_Evolution"
    KAPSO = "WhatsApp_Kapso"
    CHATWOOT = "Chatwoot"
    OPENAI_COMPATIBLE = "OpenAiCompatible"
    SCHEDULER = "Scheduler"
    BATCH = "Batch"
    MCP = "McpInference"
    """botline's name for a turn asked through /v1/mcp/inference (the gateway as an MCP tool)."""

    @property
    def channel(self) -> str:
        """The short name metrics and log lines use: webchat, telegram, zapi, evolution, kapso, chatwoot, v1,
        scheduler, batch, mcp."""
        return _CHANNELS[self]


_CHANNELS = {
    CallSource.WEB_CHAT: "webchat", CallSource.TELEGRAM: "telegram", CallSource.ZAPI: "zapi",
    CallSource.EVOLUTION: "evolution", CallSource.KAPSO: "kapso", CallSource.CHATWOOT: "chatwoot",
    CallSource.OPENAI_COMPATIBLE: "v1", CallSource.SCHEDULER: "scheduler", CallSource.BATCH: "batch",
    CallSource.MCP: "mcp",
}


@dataclass(frozen=True)
class Caller:
    """`external_user_id` keys memories and schedules: a web session's tag, "{integration}:{chat id}"
    on channels, `user` on /v1. `chat_client_id`/`session_id` are set for chat-client turns only."""

    call_source: CallSource
    account_id: str
    external_user_id: str | None = None
    conversation_token: str | None = None
    session_id: str | None = None
    chat_client_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    key_id: str | None = None
    """The API key the turn was asked with (/v1), whose `key_limits` it is counted against."""
    key_limits: UsageLimits | None = None
