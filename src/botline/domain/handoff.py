"""Who answers a chat: the bot, or a person who took it over (human handoff, docs/handoff.md).

The state lives on the session document, so every turn reads it with the session it already loads
(no extra Store round trip) and every replica sees a takeover as soon as it is written.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from botline.domain.base import CamelModel
from botline.domain.limits import Items, Name, Text, Url

DEFAULT_WINDOW = timedelta(minutes=30)
DEFAULT_USER_MESSAGE = "A person will answer you shortly."
DEFAULT_USER_KEYWORDS = ("atendente", "humano", "human")
DEFAULT_OPERATOR_KEYWORDS = ("#bot",)
MAX_WINDOW_MINUTES = 7 * 24 * 60
KEYWORD_MAX = 64
_SPACES = re.compile(r"\s+")


class Controller(StrEnum):
    BOT = "bot"
    HUMAN = "human"


class HandoffTrigger(StrEnum):
    """Why the chat changed hands; `by` in the state, `trigger` in the notification."""

    OPERATOR = "operator"
    """A message typed on the business's own WhatsApp number (not sent by botline)."""
    MODEL = "model"
    """The model called handoff_to_human."""
    KEYWORD = "keyword"
    """The user wrote one of the user keywords, or the operator one of the operator keywords."""
    API = "api"
    CHATWOOT = "chatwoot"
    TIMEOUT = "timeout"


class Handoff(CamelModel):
    """The chat's controller. `until` None = until someone gives it back; a human state whose `until`
    has passed is the bot's again (read lazily with the clock: nothing has to wake up for it)."""

    state: Controller
    by: HandoffTrigger
    reason: str | None = None
    agent: str | None = None
    """The person who took it, when known (an operator's name from the API)."""
    since: datetime
    until: datetime | None = None

    def is_human(self, now: datetime) -> bool:
        return self.state is Controller.HUMAN and (self.until is None or self.until > now)

    def returned_at(self, now: datetime) -> datetime | None:
        """When the bot got the chat back (a resume, or the takeover's window running out); None while a
        person has it. Messages that arrived before it were the person's to answer."""
        if self.state is Controller.BOT:
            return self.since
        return self.until if self.until is not None and self.until <= now else None


def controller(handoff: Handoff | None, now: datetime) -> Controller:
    return Controller.HUMAN if handoff is not None and handoff.is_human(now) else Controller.BOT


def handoff_view(handoff: Handoff | None, now: datetime) -> dict[str, object]:
    """The state as the sessions API and the transcript show it (a lapsed takeover reads `bot`)."""
    state = controller(handoff, now)
    if handoff is None:
        return {"state": state.value, "by": None, "reason": None, "agent": None, "since": None, "until": None}
    wire = handoff.wire()
    if state is Controller.BOT and handoff.state is Controller.HUMAN:  # lapsed: given back by the window
        until = wire["until"]
        return {"state": state.value, "by": HandoffTrigger.TIMEOUT.value, "reason": None, "agent": None,
                "since": until, "until": None}
    return {**wire, "state": state.value}



class HandoffSettings(CamelModel):
    """Per chat client (`clientParameters.handoff`, botline's addition). Omitted: the defaults below."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Offers the model the handoff_to_human tool (a gateway can also enable it: sentinel "Handoff")."""
    window_minutes: int = Field(default=int(DEFAULT_WINDOW.total_seconds() // 60), ge=1, le=MAX_WINDOW_MINUTES)
    """How long a takeover lasts after the last operator message (sliding); also the wait for a person
    after the model, a keyword or the API handed the chat over without a duration."""
    user_message: Text = DEFAULT_USER_MESSAGE
    """Sent to the user when the chat is handed to a person (tool or keyword)."""
    user_keywords: Items[Name] = Field(default_factory=lambda: list(DEFAULT_USER_KEYWORDS))
    """A user message that is exactly one of these (case and spaces ignored) asks for a person."""
    operator_keywords: Items[Name] = Field(default_factory=lambda: list(DEFAULT_OPERATOR_KEYWORDS))
    """An operator message that is exactly one of these gives the chat back to the bot (not stored)."""
    webhook_url: Url | None = None
    """POSTed on every handoff and resume, signed with the account's hook key (docs/handoff.md)."""
    telegram_chat_id: Name | None = None
    """A Telegram chat of the operators, told of every handoff through the client's Telegram bot."""

    @field_validator("user_keywords", "operator_keywords")
    @classmethod
    def _keywords(cls, values: list[str]) -> list[str]:
        cleaned = [normal(value) for value in values]
        if any(not value or len(value) > KEYWORD_MAX for value in cleaned):
            raise ValueError(f"each keyword must have between 1 and {KEYWORD_MAX} characters")
        return cleaned

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value or None

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)


def normal(text: str) -> str:
    """Lower case, spaces collapsed: how keywords are compared (one pass, linear)."""
    return _SPACES.sub(" ", text.strip().lower())


def is_keyword(text: str, keywords: list[str]) -> bool:
    """Exactly a keyword: a customer who writes "I am not human" is not asking for a person."""
    if not text or len(text) > KEYWORD_MAX * 2:
        return False
    return normal(text) in keywords
