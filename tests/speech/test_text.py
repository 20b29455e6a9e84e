"""What a listener hears of a markdown answer."""

from __future__ import annotations

from botline.speech.text import cut_at_sentence, spoken_text


def test_code_tables_and_urls_are_not_read_aloud() -> None:
    answer = (
        "## Setup\n\nRun this:\n\n```bash\npip install botline\n```\n\n"
        "| plan | price |\n|---|---|\n| pro | 10 |\n\n"
        "- See [the docs](https://docs.example/start) or https://example.com/a/very/long/path?x=1\n"
        "![diagram](https://img.example/d.png)"
    )
    assert spoken_text(answer, max_chars=4096) == "Setup. Run this: See the docs or example.com."


def test_long_text_is_cut_after_a_sentence() -> None:
    text = "One sentence here. " * 20
    cut = spoken_text(text, max_chars=50)
    assert cut == "One sentence here. One sentence here."
    assert cut_at_sentence("no sentence end at all in this text", 20) == "no sentence end at"


def test_hostile_input_is_bounded() -> None:
    huge = "[" * 200_000 + "(" * 200_000
    assert len(spoken_text(huge, max_chars=100)) <= 100
