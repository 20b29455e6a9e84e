"""Field-level changes the repositories apply in place (never by writing back a whole document
read earlier), so concurrent writers of other fields, and atomic counters, are never undone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botline.domain.accounts import Account, AccountParameters, Plan, UsageLimits
from botline.domain.chat_clients import ChatClient, ClientParameters, LimitingParameters
from botline.domain.integrations import FIELD_OF, Integrations, IntegrationType
from botline.domain.llm_connections import LlmConnection
from botline.domain.policies import Policy


@dataclass(frozen=True)
class AccountChange:
    """Fields of a stored account to set; None leaves a field as stored. Applied field by field
    (never by writing back a whole document read earlier), so an edit of other fields, or a balance
    adjustment, made meanwhile is kept."""

    name: str | None = None
    email: str | None = None
    plan: Plan | None = None
    is_admin: bool | None = None
    disabled: bool | None = None
    parameters: AccountParameters | None = None
    salt: str | None = None
    limits: UsageLimits | None = None

    def fields(self) -> dict[str, Any]:
        """The fields to set, by their stored (camelCase) names, as JSON-ready values."""
        given = {name: value for name, value in vars(self).items() if value is not None}
        return Account.model_construct(**given).model_dump(mode="json", by_alias=True, include=set(given))


class BalanceOperation(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    SET = "set"


@dataclass(frozen=True)
class ClientSettings:
    """What an edit of a chat client sets: everything except its integrations."""

    name: str
    ai_gateway_id: str | None
    limiting_parameters: LimitingParameters
    client_parameters: ClientParameters

    def fields(self) -> dict[str, Any]:
        """The stored (camelCase) names and JSON-ready values."""
        client = ChatClient.model_construct(**vars(self))
        return client.model_dump(mode="json", by_alias=True, include=set(vars(self)))


def integration_path(kind: IntegrationType) -> list[str]:
    """Where a client's document holds the integration of `kind` (stored camelCase names)."""
    return ["integrations", str(Integrations.model_fields[FIELD_OF[kind]].alias)]


@dataclass(frozen=True)
class SessionContext:
    """The caller-given context a renewal by tag replaces."""

    extra_context: str | None
    context_location: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class ConnectionChange:
    """Fields of a stored LLM connection to set, by Python name; a None value is written (it clears
    the field: a new endpoint clears `validated_at`), a field left out is kept as stored."""

    values: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        """The stored (camelCase) names and JSON-ready values."""
        connection = LlmConnection.model_construct(**self.values)
        return connection.model_dump(mode="json", by_alias=True, include=set(self.values))


@dataclass(frozen=True)
class PolicyChange:
    """Fields of a stored policy to set, by Python name (name, content, riskType, actionType, updatedAt)."""

    values: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return Policy.model_construct(**self.values).model_dump(mode="json", by_alias=True, include=set(self.values))
