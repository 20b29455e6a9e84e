"""Hour buckets for usage aggregation, shared by every backend."""

from __future__ import annotations

from datetime import UTC, datetime


def hour_bucket(moment: datetime) -> str:
    """The UTC hour containing `moment`, as a sortable string: 2026-11-25T09."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")
