"""What counts as media in a tool's answer, and the file the channels send.

A protocol function's callback answers with text or JSON for the model; any other content type
(`image/*`, `application/pdf`, ...) is a file for the user. Only raster images that every client
draws safely are images; anything else (SVG included: it can carry script) travels as a document.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

WHATSAPP_IMAGE_BYTES = 5 * 1024 * 1024
"""WhatsApp's limit for an image message (Meta's media limits); larger ones are not sent."""
WHATSAPP_DOCUMENT_BYTES = 100 * 1024 * 1024
"""WhatsApp's limit for a document message."""

WHATSAPP_IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
"""What Meta's Cloud API takes as an image message; other images go as documents."""

INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Sent as photos and drawn inline by the web chat."""

_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/x-www-form-urlencoded", ""})
_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]{1,200})""", re.IGNORECASE)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
MAX_FILENAME = 100


def image_type(data: bytes) -> str | None:
    """The inline image type `data` really is (PNG, JPEG, GIF, WebP, by their first bytes), or None.

    Whatever a tool claims, this decides: a provider refuses (and fails the whole model call on) an
    image whose bytes are not what its type says."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class OutboundMedia:
    data: bytes
    content_type: str
    filename: str
    url: str | None = None
    """For the web chat only: a public address of botline's that downloads the file (a shell file's),
    shown as a download chip instead of carrying `data` (which is then empty)."""

    @property
    def is_image(self) -> bool:
        return self.content_type in INLINE_IMAGE_TYPES

    def data_url(self) -> str:
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode()}"

    def wire(self) -> dict[str, str]:
        """For the web chat: a `data:` URL, which the page's CSP (`img-src 'self' data:`) lets it draw, or
        the public address of a download."""
        if self.url is not None:
            return {"kind": "file", "fileName": self.filename, "contentType": self.content_type, "url": self.url}
        return {"kind": "image" if self.is_image else "file", "fileName": self.filename,
                "contentType": self.content_type, "url": self.data_url()}


def media_type(header: str) -> str:
    """`image/PNG; charset=x` -> `image/png`."""
    return header.split(";", 1)[0].strip().lower()[:100]


def is_text_for_model(content_type: str) -> bool:
    xml = content_type.endswith("+xml") and not content_type.startswith("image/")
    structured = content_type.endswith("+json") or xml
    return content_type.startswith("text/") or content_type in _TEXT_TYPES or structured


def safe_filename(name: str, content_type: str, fallback: str) -> str:
    """A name any provider and file system takes: no path, no control or quoting characters."""
    cleaned = _UNSAFE_NAME.sub("_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip(" .")[:MAX_FILENAME]
    if cleaned:
        return cleaned
    extension = mimetypes.guess_extension(content_type) or ".bin"
    return f"{_UNSAFE_NAME.sub('_', fallback)[:MAX_FILENAME - 8] or 'file'}{extension}"


MAX_ATTACHMENTS = 8


@dataclass(frozen=True)
class Attachments:
    text: str
    media: list[OutboundMedia]


def attachments_from_json(content_type: str, body: bytes, *, name: str) -> Attachments | None:
    """The documented JSON shape `{"text": "...", "attachments": [{"data": "<base64>", "contentType",
    "fileName"?}]}` (those two keys only), or None for any other answer, which then goes to the model
    as it is. An attachment that is not valid base64 or has no type is a ValueError naming it."""
    if content_type != "application/json" or b'"attachments"' not in body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or set(parsed) - {"text", "attachments"} or not isinstance(
            parsed.get("attachments"), list) or not isinstance(parsed.get("text", ""), str):
        return None
    media: list[OutboundMedia] = []
    for index, item in enumerate(parsed["attachments"][:MAX_ATTACHMENTS]):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str) \
                or not isinstance(item.get("contentType"), str):
            raise ValueError(f"attachments[{index}] needs data (base64) and contentType")
        try:
            data = base64.b64decode(item["data"], validate=True)
        except ValueError:
            raise ValueError(f"attachments[{index}].data is not base64") from None
        kind = media_type(item["contentType"])
        given = item.get("fileName")
        file_name = given if isinstance(given, str) else ""
        if data:
            media.append(OutboundMedia(data=data, content_type=kind,
                                       filename=safe_filename(file_name, kind, f"{name}-{index + 1}")))
    return Attachments(text=str(parsed.get("text", "")), media=media)


def media_from_response(headers: Mapping[str, str], body: bytes, *, name: str) -> OutboundMedia | None:
    """The file in an HTTP answer, or None when the answer is text for the model (or empty)."""
    content_type = media_type(headers.get("Content-Type", ""))
    if not body or is_text_for_model(content_type):
        return None
    disposition = _FILENAME.search(headers.get("Content-Disposition", "")[:500])
    return OutboundMedia(data=body, content_type=content_type,
                         filename=safe_filename(disposition.group(1) if disposition else "", content_type, name))
