"""The retry policy both model clients follow (the openai SDK's): what is retried, and after how long."""

from __future__ import annotations

import email.utils

import pytest

from botline.gateway.retries import MAX_DELAY, delay_before_retry, retry_after, should_retry

NOW = 1_800_000_000.0


def date(seconds_from_now: float) -> str:
    return email.utils.formatdate(NOW + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": date(30)}, 30.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_in_its_three_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers, NOW) == expected


def test_an_asked_wait_within_the_cap_replaces_the_backoff() -> None:
    assert delay_before_retry(0, {"retry-after": date(7)}, NOW, lambda: 0.5) == 7.0
    assert delay_before_retry(0, {"retry-after": "120"}, NOW, lambda: 0.5) == 120.0


@pytest.mark.parametrize("headers", [None, {"retry-after": "0"}, {"retry-after": date(-5)}, {"retry-after": "121"}])
def test_otherwise_the_backoff_doubles_with_up_to_a_quarter_of_jitter(headers: dict[str, str] | None) -> None:
    assert delay_before_retry(0, headers, NOW, lambda: 0.0) == 0.5
    assert delay_before_retry(2, headers, NOW, lambda: 1.0) == 2.0 * 0.75
    assert delay_before_retry(30, headers, NOW, lambda: 0.0) == MAX_DELAY


@pytest.mark.parametrize(("status", "headers", "retried"), [
    (408, {}, True), (409, {}, True), (429, {}, True), (500, {}, True), (599, {}, True),
    (400, {}, False), (401, {}, False), (404, {}, False),
    (503, {"x-should-retry": "false"}, False), (400, {"x-should-retry": "true"}, True),
    (429, {"retry-after": "121"}, False), (429, {"retry-after": date(3600)}, False),
    (429, {"retry-after": "1e999"}, False),
])
def test_what_is_retried(status: int, headers: dict[str, str], retried: bool) -> None:
    assert should_retry(status, headers, NOW) is retried
