"""Splitting answers into channel messages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botline.engine.delivery import FENCE, MIN_LIMIT, Length, split_message, split_parts, utf16_length

CODE = "```python\nprint('a')\n\nprint('b')\n```"


def test_by_paragraph_sends_each_paragraph_and_keeps_code_blocks_whole() -> None:
    text = f"First.\n\nSecond line one\nline two.\n\n{CODE}\n\nLast."
    assert split_message(text, limit=4096, by_paragraph=True) == [
        "First.", "Second line one\nline two.", CODE, "Last."]


def test_without_paragraph_splitting_one_message_when_it_fits() -> None:
    text = f"First.\n\n{CODE}"
    assert split_message(text, limit=4096, by_paragraph=False) == [text]


def test_long_text_is_packed_under_the_limit_at_paragraph_boundaries() -> None:
    paragraphs = [f"paragraph {n} " + "x" * 40 for n in range(10)]
    messages = split_message("\n\n".join(paragraphs), limit=120, by_paragraph=False)
    assert all(len(m) <= 120 for m in messages)
    assert "\n\n".join(messages) == "\n\n".join(paragraphs)


def test_an_oversized_code_block_is_split_into_fenced_parts() -> None:
    block = "```\n" + "\n".join(f"line {n}" for n in range(40)) + "\n```"
    messages = split_message(block, limit=60, by_paragraph=False)
    assert len(messages) > 1
    assert all(m.startswith("```\n") and m.endswith("\n```") and len(m) <= 60 for m in messages)


def test_telegram_counts_utf16_units() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    messages = split_message(emoji, limit=4096, by_paragraph=False, length=utf16_length)
    assert [utf16_length(m) for m in messages] == [4096, 1904]
    assert "".join(messages) == emoji


# H1: the splitter ends, and loses nothing, for every input.

@pytest.mark.timeout(10, method="signal")  # the old code looped forever here: fail by timeout, not hang
@pytest.mark.parametrize("length", [len, utf16_length])
def test_h1_a_fence_line_longer_than_the_limit_is_cut_unfenced_and_the_split_returns(length: Length) -> None:
    text = "```" + "a" * 4100
    messages = split_message(text, limit=4096, by_paragraph=False, length=length)
    assert messages == [text[:4096], text[4096:]]


def test_a_fence_too_long_to_repeat_is_not_repeated() -> None:
    opener = "```" + "x" * 30
    block = f"{opener}\n" + "\n".join(f"line {n}" for n in range(20)) + "\n```"
    messages = split_message(block, limit=40, by_paragraph=False)
    assert all(len(m) <= 40 for m in messages)
    assert sum(m.count(opener) for m in messages) == 1
    assert "\n".join(messages) == block


def test_an_oversized_unclosed_code_block_keeps_its_last_line() -> None:
    block = "```\n" + "\n".join(f"line {n}" for n in range(40))
    messages = split_message(block, limit=60, by_paragraph=False)
    assert messages[-1].endswith("line 39\n```")
    assert all(len(m) <= 60 for m in messages)


def test_text_after_a_code_block_in_the_same_paragraph_is_sent_unfenced() -> None:
    block = "```\n" + "\n".join(f"line {n}" for n in range(20)) + "\n```\nAnd that is all."
    messages = split_message(block, limit=60, by_paragraph=False)
    assert messages[-2].endswith("line 19\n```")
    assert messages[-1] == "And that is all."


def content(text: str) -> str:
    """An answer's content: its characters other than whitespace, in order."""
    return "".join(text.split())


def long_runs(unit: str) -> st.SearchStrategy[str]:
    return st.integers(1, 9000).map(lambda n: unit * n)


FRAGMENTS = st.one_of(
    st.text(alphabet=st.sampled_from([*"ab `~\n\t\r", "😀", "é", "\u200d", "𝄞", "\u2028"]), max_size=40),
    st.text(max_size=20),  # anything else Unicode has (surrogates aside: no store or channel carries them)
    st.sampled_from(["```", "~~~", "```python", "  ```", "\n```\n", "\n\n", "\n\n\n", "\n \n"]),
    st.sampled_from(["a", "😀", "`", " ", "\n", "ab\n", "\n\n😀"]).flatmap(long_runs),
    st.integers(0, 9000).map(lambda n: "```" + "x" * n),
    st.integers(0, 9000).map(lambda n: "~~~" + "😀" * n + "\n"),
)


@pytest.mark.timeout(120, method="signal")
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(FRAGMENTS, max_size=12).map("".join), limit=st.integers(MIN_LIMIT, 5000),
       by_paragraph=st.booleans(), length=st.sampled_from([len, utf16_length]))
def test_every_answer_splits_into_messages_that_fit_and_rejoin_to_its_content(
    text: str, limit: int, by_paragraph: bool, length: Length
) -> None:
    """For any text and any limit >= MIN_LIMIT, counted as the channels count (characters, or
    UTF-16 units for Telegram): the split returns; every message fits the limit and is not blank;
    each message is exactly its parts rendered, a part being the answer's own text (`body`) with,
    at most, a fence line the splitter added above it (`head`) and a closing marker below (`tail`);
    and the bodies, concatenated, have the original text's content: equal once whitespace is
    removed (the splitter drops whitespace only at cut points and between paragraphs)."""
    messages = split_parts(text, limit=limit, by_paragraph=by_paragraph, length=length)
    sent = split_message(text, limit=limit, by_paragraph=by_paragraph, length=length)
    assert sent == ["\n\n".join(part.render() for part in message) for message in messages]
    assert all(length(m) <= limit and m.strip() for m in sent)
    parts = [part for message in messages for part in message]
    assert content("".join(part.body for part in parts)) == content(text)
    for part in parts:
        assert part.head == "" or (FENCE.match(part.head) and part.head in text.strip().split("\n"))
        assert part.tail in ("", "```", "~~~")
