"""Which callback answers are files for the user, and what they are called."""

from __future__ import annotations

import base64

import pytest

from botline.media import media_from_response
from tests.support.images import png


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=utf-8", "application/ld+json",
                                          "application/xml", "application/atom+xml", "text/html", ""])
def test_text_and_structured_answers_stay_for_the_model(content_type: str) -> None:
    assert media_from_response({"Content-Type": content_type}, b"{}", name="tool") is None


def test_an_image_is_an_inline_image_named_after_the_tool() -> None:
    media = media_from_response({"Content-Type": "IMAGE/PNG"}, png(2, 2), name="make_chart")
    assert media is not None and media.is_image and media.filename == "make_chart.png"
    assert media.wire()["url"] == "data:image/png;base64," + base64.b64encode(png(2, 2)).decode()


def test_svg_is_a_document_never_an_inline_image() -> None:
    media = media_from_response({"Content-Type": "image/svg+xml"}, b"<svg onload='x()'/>", name="draw")
    assert media is not None and not media.is_image and media.wire()["kind"] == "file"


def test_the_callbacks_file_name_is_kept_without_paths_or_quoting() -> None:
    headers = {"Content-Type": "application/pdf",
               "Content-Disposition": 'attachment; filename="../../etc/Q3 <report>.pdf"'}
    media = media_from_response(headers, b"%PDF-1.4", name="report")
    assert media is not None and media.filename == "Q3 _report_.pdf"


def test_an_empty_answer_is_no_file() -> None:
    assert media_from_response({"Content-Type": "image/png"}, b"", name="tool") is None
