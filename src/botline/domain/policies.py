"""AI policies (Flashback "AI Policy"): rules in plain language that a judge model checks turns against,
and the violations it finds. docs/governance.md, "AI policies"."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import LongText, Name, Text


class RiskType(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ActionType(IntEnum):
    LOG = 0
    """The violation is recorded."""
    ALERT = 1
    """Recorded, and an alert raised."""
    BLOCK = 2
    """Recorded, an alert raised, and the content stopped: not sent to the model (input) or not shown (output)."""


class Phase(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Policy(CamelModel):
    """A rule. Its scope is the account, or one gateway (`ai_gateway_id`), or one chat client
    (`chat_client_id`); fixed at creation."""

    id: str = Field(default_factory=new_id)
    account_id: str
    name: str
    content: str
    risk_type: RiskType
    action_type: ActionType
    ai_gateway_id: str | None = None
    chat_client_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def applies_to(self, gateway_id: str, chat_client_id: str | None) -> bool:
        if self.ai_gateway_id is not None:
            return self.ai_gateway_id == gateway_id
        if self.chat_client_id is not None:
            return self.chat_client_id == chat_client_id
        return True

    def view(self) -> dict[str, Any]:
        """Flashback's PolicyDTO, the account standing for the organisation."""
        wire = self.wire()
        return {
            "id": self.id, "orgId": self.account_id, "name": self.name, "content": self.content,
            "riskType": self.risk_type.value, "actionType": int(self.action_type),
            "aiGatewayId": self.ai_gateway_id, "chatClientId": self.chat_client_id,
            "createdAt": wire["createdAt"], "lastUpdatedAt": wire["updatedAt"],
        }


class PolicyBody(CamelModel):
    """POST /api/v1/policy. `orgId`/`workspaceId`/`repoId` (Flashback's scope) are accepted and ignored:
    botline's scopes are the account, `aiGatewayId` or `chatClientId`."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1)
    content: LongText = Field(min_length=1)
    risk_type: RiskType
    action_type: ActionType
    ai_gateway_id: Name | None = None
    chat_client_id: Name | None = None
    org_id: Name | None = None
    workspace_id: Name | None = None
    repo_id: Name | None = None


class PolicyPatch(CamelModel):
    """PUT /api/v1/policy/{id}: only these change; the scope is immutable (its fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, min_length=1)
    content: LongText | None = Field(default=None, min_length=1)
    risk_type: RiskType | None = None
    action_type: ActionType | None = None


class Violation(CamelModel):
    """One rule broken by one turn, as the judge explained it."""

    id: str = Field(default_factory=new_id)
    account_id: str
    policy_id: str
    policy_name: str
    timestamp: datetime
    explanation: Text
    phase: Phase
    severity: RiskType
    block: bool
    alert: bool
    conversation_id: str | None = None
    user_id: str | None = None
    llm_type: str | None = None
    llm_model: str | None = None
    host: str | None = None
    """The gateway the turn ran on."""

    def view(self) -> dict[str, Any]:
        """PolicyViolationDTO."""
        return {
            "id": self.id, "policyId": self.policy_id, "policyName": self.policy_name,
            "timestamp": self.wire()["timestamp"], "explanation": self.explanation,
            "conversationId": self.conversation_id, "userId": self.user_id, "severity": self.severity.value,
            "block": self.block, "phase": self.phase.value, "llmType": self.llm_type, "llmModel": self.llm_model,
            "host": self.host,
        }

    def alert_view(self) -> dict[str, Any]:
        """PolicyAlertDTO: `message` instead of `explanation`, no severity nor block."""
        view = self.view()
        view["message"] = view.pop("explanation")
        del view["severity"], view["block"]
        return view


class ViolationQuery(CamelModel):
    """Filters of the violation and alert lists (newest first)."""

    policy_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    severity: frozenset[RiskType] | None = None
    block: bool | None = None
    alerts_only: bool = False
    skip: int = 0
    take: int = 50

    def matches(self, violation: Violation) -> bool:
        return (
            (self.policy_id is None or violation.policy_id == self.policy_id)
            and (self.since is None or violation.timestamp >= self.since)
            and (self.until is None or violation.timestamp <= self.until)
            and (self.severity is None or violation.severity in self.severity)
            and (self.block is None or violation.block == self.block)
            and (not self.alerts_only or violation.alert)
        )
