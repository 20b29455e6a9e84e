"""Token usage accounting: one record per model call, aggregated per hour in the Store."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from botline.domain.base import CamelModel, utcnow


class UsageRecord(CamelModel):
    """What one model call cost. `error` marks a call that failed upstream."""

    account_id: str
    gateway_id: str
    model: str
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: bool = False
    at: datetime = Field(default_factory=utcnow)


class UsageTotals(CamelModel):
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ModelUsage(UsageTotals):
    model: str
