"""Splitting answers into channel messages."""

from __future__ import annotations

from botline.engine.delivery import split_message, utf16_length

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
