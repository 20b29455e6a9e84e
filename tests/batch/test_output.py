"""Reading a model's answer: the envelope, fences, schema misses, confidence; prices and backoff."""

from __future__ import annotations

import pytest

from botline.batch import output
from botline.config import ModelPrice
from botline.domain import json_schema
from botline.domain.conversations import TokenUsage

SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "pattern": "^[a-z]+$"}},
          "required": ["label"]}
VALIDATOR = json_schema.validator_for(SCHEMA)


def test_the_envelope_gives_result_and_a_clamped_confidence() -> None:
    assert output.parse_output('{"result": {"label": "spam"}, "confidence": 0.7}', VALIDATOR) == output.Parsed(
        {"label": "spam"}, 0.7)
    assert output.parse_output('{"result": {"label": "spam"}, "confidence": 7}', VALIDATOR).confidence == 1.0
    assert output.parse_output('{"result": {"label": "spam"}, "confidence": "high"}', VALIDATOR).confidence is None


def test_a_bare_result_and_a_fenced_answer_are_read_too() -> None:
    assert output.parse_output('{"label": "ham"}', VALIDATOR) == output.Parsed({"label": "ham"}, None)
    fenced = '```json\n{"result": {"label": "ham"}, "confidence": 0.5}\n```'
    assert output.parse_output(fenced, VALIDATOR) == output.Parsed({"label": "ham"}, 0.5)


def test_misses_say_what_is_wrong() -> None:
    with pytest.raises(output.InvalidOutput, match="not JSON"):
        output.parse_output("The label is spam.", VALIDATOR)
    with pytest.raises(output.InvalidOutput, match="at label"):
        output.parse_output('{"result": {"label": "SPAM!"}}', VALIDATOR)
    with pytest.raises(output.InvalidOutput, match="'label' is a required property"):
        output.parse_output('{"result": {}}', VALIDATOR)


def test_a_verdict_must_say_passed() -> None:
    assert output.parse_verdict('{"passed": false, "reason": "too vague"}') == (False, "too vague")
    with pytest.raises(output.InvalidOutput):
        output.parse_verdict('{"ok": true}')


def test_cost_is_zero_without_a_price_and_per_million_tokens_with_one() -> None:
    usage = TokenUsage(prompt_tokens=2_000, completion_tokens=1_000)
    assert output.cost(usage, None) == 0.0
    assert output.cost(usage, ModelPrice(input_per_million=1.5, output_per_million=6)) == pytest.approx(0.009)


def test_backoff_honours_retry_after_up_to_the_cap_else_grows_with_jitter() -> None:
    assert output.backoff_seconds(1, 7.0, base=1, cap=60) == 7.0
    assert output.backoff_seconds(1, 600.0, base=1, cap=60) == 60
    assert all(0 <= output.backoff_seconds(4, None, base=1, cap=60) <= 8 for _ in range(50))
    assert all(output.backoff_seconds(30, None, base=1, cap=5) <= 5 for _ in range(50))
