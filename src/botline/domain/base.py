"""Base model, identifiers and time helpers used by every domain model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model that speaks camelCase on the wire and snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready, camelCase dict of this model."""
        return self.model_dump(mode="json", by_alias=True, **kwargs)


def new_id() -> str:
    """A new random UUID string; every object id is one."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
