"""Batch workflows: one instruction and result schema (a workflow), runs of it (jobs) over many inputs (items).

Field names and states follow the seed's Batch section. An item is Pending until a worker records one
final state; while a worker holds its claim it is Pending *and* running (`isRunning`), which is a
lease in the Store, not a state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from botline.domain import json_schema
from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.gateways import BuiltinFunctionsOptions, SentinelFunction, StrictCamelModel
from botline.domain.limits import ITEMS_MAX, Items, JsonObject, LongText, Name, Text

PRIORITY_MAX = 1_000_000
"""|priority| at most this: the Redis queue scores priority and insertion order in one exact double."""
MAX_RETRIES_MAX = 10
ERROR_STOP_MAX = 1_000_000


class JobState(StrEnum):
    ACTIVE = "Active"
    PAUSED = "Paused"
    FINISHED = "Finished"


class ItemState(StrEnum):
    PENDING = "Pending"
    FINISHED = "Finished"
    REFUSED = "Refused"
    EXECUTION_ERROR = "ExecutionError"
    VALIDATION_ERROR = "ValidationError"
    CANCELLED = "Cancelled"


FAILED_STATES = frozenset({ItemState.REFUSED, ItemState.EXECUTION_ERROR, ItemState.VALIDATION_ERROR})
FINAL_STATES = frozenset(set(ItemState) - {ItemState.PENDING})


class ItemSelection(StrEnum):
    """Which non-running items `DELETE .../items?which=` removes."""

    PENDING = "pending"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ALL = "all"

    def states(self) -> frozenset[ItemState]:
        return {
            ItemSelection.PENDING: frozenset({ItemState.PENDING}),
            ItemSelection.SUCCESSFUL: frozenset({ItemState.FINISHED}),
            ItemSelection.FAILED: FAILED_STATES,
            ItemSelection.ALL: frozenset(ItemState),
        }[self]


class EnabledTools(StrictCamelModel):
    """The built-in (Sentinel) functions the workflow's items may use, in place of the gateway's
    (batch/tools.py)."""

    enabled_functions: Items[SentinelFunction] = Field(default_factory=list)
    options: BuiltinFunctionsOptions | None = None

    @field_validator("enabled_functions", mode="before")
    @classmethod
    def _known_names(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) <= ITEMS_MAX:
            known = {f.value for f in SentinelFunction}
            unknown = list(dict.fromkeys(
                str(name)[:64] for name in value if not (isinstance(name, str) and name in known)))
            if unknown:
                raise ValueError(f"unknown function {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return value


class WorkflowOptions(StrictCamelModel):
    instruction: LongText = Field(min_length=1)
    result_schema: JsonObject
    """A JSON Schema (draft 7 subset) every output must validate against; checked when saved."""
    validation_instruction: LongText | None = None
    """When set, a second model call judges each output against it."""
    enabled_tools: EnabledTools | None = None

    @field_validator("result_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        json_schema.check_schema(value)
        return value


class WorkflowSettings(StrictCamelModel):
    """What a client sets on a workflow (create body; PATCH merges into it)."""

    title: Name | None = None
    options: WorkflowOptions
    model_name: Name = Field(min_length=1)
    """The id or slug of one of the account's AI gateways: its turn pipeline runs every item."""
    reasoning_effort: Name | None = None
    error_stop_threshold: int = Field(default=0, ge=0, le=ERROR_STOP_MAX)
    """A job pauses once this many of its items ended ExecutionError; 0 = never."""
    max_retries: int = Field(default=2, ge=0, le=MAX_RETRIES_MAX)
    """Further attempts per item after an invalid output, and after an upstream error."""


class Workflow(WorkflowSettings):
    id: str = Field(default_factory=new_id)
    account_id: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def settings(self) -> dict[str, Any]:
        """The client-settable part, camelCase (what a PATCH merges into)."""
        return self.wire(include=set(WorkflowSettings.model_fields))

    def view(self) -> dict[str, Any]:
        """The seed's workflow object."""
        return self.wire(exclude={"account_id"})


class JobEvent(CamelModel):
    moment: datetime = Field(default_factory=utcnow)
    event_type: Name
    description: Text


class BatchJob(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    workflow_id: str = Field(alias="parentBatchWorkflowId")
    title: Name | None = None
    created_at: datetime = Field(default_factory=utcnow)
    state: JobState = JobState.ACTIVE
    restarted_at: datetime | None = None


class ValidationResult(CamelModel):
    passed: bool
    reason: str | None = None


class BatchItem(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    job_id: str = Field(alias="parentBatchWorkflowJobId")
    sequence: int = 0
    """Import order within the job (set by the Store): export and listing follow it."""
    inserted_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
    state: ItemState = ItemState.PENDING
    priority: int = Field(default=0, ge=-PRIORITY_MAX, le=PRIORITY_MAX)
    input: str
    output: str | None = None
    validation_result: ValidationResult | None = None
    confidence: float | None = None
    total_cost: float | None = None


@dataclass(frozen=True)
class ItemResult:
    """What a worker records for one claimed item (once: the Store checks the claim)."""

    state: ItemState
    processed_at: datetime
    output: str | None = None
    validation_result: ValidationResult | None = None
    confidence: float | None = None
    cost: float = 0.0
    """Added to the item's totalCost (kept across retries: it is money spent)."""

    def fields(self) -> dict[str, Any]:
        """The item's stored (camelCase) fields this result sets, as JSON-ready values."""
        return {
            "state": self.state.value, "processedAt": self.processed_at.isoformat(), "output": self.output,
            "validationResult": None if self.validation_result is None else self.validation_result.wire(),
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class JobCounts:
    """A job's items by state, as the Store counts them. `pending` includes the running ones."""

    pending: int = 0
    running: int = 0
    finished: int = 0
    refused: int = 0
    execution_errors: int = 0
    validation_errors: int = 0
    cancelled: int = 0
    total_cost: float = 0.0
    confidence_sum: float = 0.0
    confidence_count: int = 0

    @property
    def failed(self) -> int:
        return self.refused + self.execution_errors + self.validation_errors

    @property
    def total(self) -> int:
        return self.pending + self.finished + self.failed + self.cancelled

    def summary(self) -> dict[str, Any]:
        """The seed's counters (docs/batch.md defines each)."""
        processed = self.finished + self.failed
        return {
            "pending": self.pending - self.running, "running": self.running, "finished": self.finished,
            "refused": self.refused, "executionErrors": self.execution_errors,
            "validationErrors": self.validation_errors, "cancelled": self.cancelled,
            "totalCost": round(self.total_cost, 10),
            "averageConfidence": self.confidence_sum / self.confidence_count if self.confidence_count else None,
            "successRate": self.finished / processed if processed else 0.0,
            "refusalRate": self.refused / processed if processed else 0.0,
            "failed": self.failed, "completed": processed + self.cancelled, "total": self.total,
        }


@dataclass(frozen=True)
class ResultWrite:
    """One item's result, to be recorded only while `token` (its claim) still holds the item."""

    job_id: str
    item_id: str
    token: str
    result: ItemResult
