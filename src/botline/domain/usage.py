"""Token usage accounting: one record per model call, aggregated per hour in the Store."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from botline.domain.base import CamelModel, utcnow


class UsageRecord(CamelModel):
    """What one model call cost. `error` marks a call that failed upstream. A `governance` call (the
    policy judge, the routing classifier) is counted apart: under `policy_*`, not in the gateway's
    requests and tokens."""

    account_id: str
    gateway_id: str
    model: str
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: bool = False
    governance: bool = False
    at: datetime = Field(default_factory=utcnow)

    def counts(self) -> tuple[int, ...]:
        """What the record adds to each of USAGE_COUNTS."""
        if self.governance:
            return 0, 0, 0, 0, 1, self.input_tokens, self.output_tokens
        return 1, int(self.error), self.input_tokens, self.output_tokens, 0, 0, 0


USAGE_COUNTS = ("requests", "errors", "input_tokens", "output_tokens", "policy_requests", "policy_input_tokens",
                "policy_output_tokens")
"""The counters of a usage bucket (the fields of UsageTotals), in the order of UsageRecord.counts."""


class UsageTotals(CamelModel):
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    policy_requests: int = 0
    """Governance calls (policy judge, routing classifier) made for the gateway's turns."""
    policy_input_tokens: int = 0
    policy_output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ModelUsage(UsageTotals):
    model: str
