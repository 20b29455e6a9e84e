"""When a failed model call is tried again, and after how long: small pure functions, the openai SDK's
policy (`_base_client.py`: `_should_retry`, `_calculate_retry_timeout`, `_parse_retry_after_header`)
restated so that the lean client behaves as the SDK client does.

Retried: connection errors and timeouts, and 408, 409, 429 and 5xx answers, unless the upstream says
otherwise with `x-should-retry: true|false`, or asks for a `Retry-After` longer than `MAX_RETRY_AFTER`
(then the caller gets the error at once, with the wait in it). The wait: the upstream's `retry-after-ms`
or `Retry-After` (seconds or an HTTP date) when it is between 0 and `MAX_RETRY_AFTER`, else
exponential backoff from `INITIAL_DELAY` up to `MAX_DELAY`, less a random 0-25 % (jitter).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
"""Seconds: a longer Retry-After is not waited out (the caller gets the 429 with it)."""
RETRYABLE_STATUSES = frozenset({408, 409, 429})
SHOULD_RETRY_HEADER = "x-should-retry"


def retry_after(headers: Mapping[str, str] | None, now: float) -> float | None:
    """Seconds the upstream asks to wait: `retry-after-ms`, then `Retry-After` as seconds or an HTTP date
    (relative to `now`, a `time.time()`); None when absent or unreadable."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER + 1  # an overflowing number is an excessive delay, not a short one
        return delay / divisor
    try:
        parsed = email.utils.parsedate_tz(headers.get("retry-after"))
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - now)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(status: int, headers: Mapping[str, str], now: float) -> bool:
    """Whether an error answer is worth another attempt."""
    asked = retry_after(headers, now)
    if asked is not None and math.isfinite(asked) and asked > MAX_RETRY_AFTER:
        return False
    explicit = headers.get(SHOULD_RETRY_HEADER)
    if explicit == "true":
        return True
    if explicit == "false":
        return False
    return status in RETRYABLE_STATUSES or status >= 500


def delay_before_retry(retries_taken: int, headers: Mapping[str, str] | None, now: float,
                       random: Callable[[], float]) -> float:
    """Seconds to wait before retry number `retries_taken + 1`; `headers` of the failed answer, if any."""
    asked = retry_after(headers, now)
    if asked is not None and math.isfinite(asked) and 0 < asked <= MAX_RETRY_AFTER:
        return asked
    backoff = min(INITIAL_DELAY * 2.0 ** min(retries_taken, 1000), MAX_DELAY)
    return max(backoff * (1 - 0.25 * random()), 0.0)
