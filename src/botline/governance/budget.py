"""Usage limits: tokens per UTC day and spend per UTC month, for an API key (its scope) and for an
account (set by an administrator). Counted in the Store (atomic additions shared by every replica);
a turn is refused before it starts once a count has reached its limit, so a turn that starts under a
limit may end past it (by at most that turn). Spend is priced with `batch.prices` (the one price
table); a model without a price costs 0."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botline.account_cache import AccountCache
from botline.batch.output import cost
from botline.config import ModelPrice
from botline.domain.accounts import UsageLimits
from botline.domain.clock import Clock
from botline.domain.conversations import TokenUsage
from botline.gateway.caller import Caller
from botline.gateway.errors import GatewayError
from botline.metrics import Metrics
from botline.store.base import Store

NANO = 1_000_000_000
"""Spend is counted in billionths of the price table's currency (integers add atomically)."""
DAY_TTL = 2 * 86_400
MONTH_TTL = 33 * 86_400


class LimitReached(GatewayError):
    """429 (tokens per day, with Retry-After: the next UTC midnight) or 402 (spend per month)."""


@dataclass(frozen=True)
class _Subject:
    label: str
    """"API key" or "account": named in the refusal, so a caller knows which budget it hit."""
    limits: UsageLimits
    tokens_key: str
    spend_key: str


class UsageBudget:
    """The pipeline's TurnBudget (gateway/guards.py)."""

    def __init__(self, store: Store, accounts: AccountCache, clock: Clock, prices: Mapping[str, ModelPrice], *,
                 metrics: Metrics) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._prices = prices
        self._metrics = metrics

    async def admit(self, caller: Caller) -> Charge | None:
        """None when no limit applies (nothing is read or counted); raises LimitReached past a limit."""
        account = await self._accounts.get(caller.account_id)
        account_limits = account.limits if account is not None and account.limits is not None \
            and account.limits.any else None
        key_limits = caller.key_limits if caller.key_id is not None else None
        if account_limits is None and key_limits is None:  # the common turn: no clock, no strings, no Store
            return None
        now = self._clock.now().astimezone(UTC)
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        subjects = []
        if account_limits is not None:
            subjects.append(_Subject("account", account_limits, f"usage:account:{caller.account_id}:tokens:{day}",
                                     f"usage:account:{caller.account_id}:spend:{month}"))
        if key_limits is not None:
            subjects.append(_Subject("API key", key_limits, f"usage:key:{caller.key_id}:tokens:{day}",
                                     f"usage:key:{caller.key_id}:spend:{month}"))
        counts = await self._store.counters.values([key for s in subjects for key in (s.tokens_key, s.spend_key)])
        for index, subject in enumerate(subjects):
            tokens, spend = counts[2 * index], counts[2 * index + 1]
            limits = subject.limits
            if limits.tokens_per_day is not None and tokens >= limits.tokens_per_day:
                self._metrics.usage_limit_refusals(subject.label, "tokens_per_day").inc()
                raise LimitReached(
                    f"This {subject.label}'s usage limit of {limits.tokens_per_day} tokens per day is reached "
                    "(the count starts again at 00:00 UTC).", status_code=429, retry_after=_until_tomorrow(now))
            if limits.spend_per_month is not None and spend >= limits.spend_per_month * NANO:
                self._metrics.usage_limit_refusals(subject.label, "spend_per_month").inc()
                raise LimitReached(
                    f"This {subject.label}'s spending limit of {limits.spend_per_month:g} per month is reached "
                    "(the count starts again on the 1st, 00:00 UTC).", status_code=402,
                    retry_after=_until_next_month(now))
        return Charge(self._store, self._prices, subjects)


class Charge:
    """What one admitted turn adds to its budgets once its model calls are done."""

    def __init__(self, store: Store, prices: Mapping[str, ModelPrice], subjects: list[_Subject]) -> None:
        self._store = store
        self._prices = prices
        self._subjects = subjects

    async def add(self, model: str, usage: TokenUsage) -> None:
        tokens = usage.total_tokens
        spend = round(cost(usage, self._prices.get(model)) * NANO)
        counters = self._store.counters
        for subject in self._subjects:
            if tokens:
                await counters.add(subject.tokens_key, tokens, ttl_seconds=DAY_TTL)
            if spend:
                await counters.add(subject.spend_key, spend, ttl_seconds=MONTH_TTL)


def _until_tomorrow(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, math.ceil((tomorrow - now).total_seconds()))


def _until_next_month(now: datetime) -> float:
    first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, math.ceil((first - now).total_seconds()))
