"""A faithful emulator of the Telegram Bot API, for tests and benchmarks.

:class:`TelegramEmulator` is a real aiohttp server bound to a local port. It
answers ``/bot<token>/<method>`` the way ``api.telegram.org`` does (same
envelope, same error descriptions, same status codes, form / multipart / JSON
bodies, GET or POST), so the unmodified ``python-telegram-bot`` reaches it with::

    telegram.Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)

(PTB 22 appends the token to a plain ``base_url`` string, so ``base_url`` is
``http://127.0.0.1:<port>/bot``.)

Implemented methods: ``getMe``, ``setWebhook``, ``deleteWebhook``,
``getWebhookInfo``, ``getUpdates`` (offset confirmation, long polling, 409
conflicts), ``sendMessage`` (parse modes parsed like the real server, 4096
UTF-16 unit limit, replies), ``sendChatAction`` and ``getFile`` plus the file
download route ``/file/bot<token>/<file_path>``. Method names are
case-insensitive, as on Telegram. Any other method answers 404 ``Not Found``.

Inbound traffic is made with the update builders (:meth:`TelegramEmulator.text_update`,
:meth:`~TelegramEmulator.photo_update`, ...), which produce Updates in the exact
JSON shape of the Bot API, and delivered with :meth:`~TelegramEmulator.queue_update`
(for ``getUpdates``), :meth:`~TelegramEmulator.push` /
:meth:`~TelegramEmulator.push_with_retries` (to the webhook, with the
``X-Telegram-Bot-Api-Secret-Token`` header and Telegram's retry schedule), or
:meth:`~TelegramEmulator.deliver` (whichever the bot configured).

Run ``python -m tests.emulators.telegram --port 8081`` for a standalone server.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dtm
import html
import itertools
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.emulators.lifecycle import Changes, Served, reset_connection

__all__ = [
    "ALL_UPDATE_TYPES",
    "CHAT_ACTIONS",
    "DEFAULT_ALLOWED_UPDATES",
    "TELEGRAM_RETRY_DELAYS",
    "BotCall",
    "Failure",
    "StoredFile",
    "TelegramEmulator",
    "WebhookConfig",
    "WebhookDelivery",
    "format_text",
    "utf16_length",
]

_JSON = "application/json"
_SHUTDOWN_TIMEOUT = 0.05  # seconds (twice over) that in-flight requests get when the emulator stops
_MAX_TEXT_LENGTH = 4096  # UTF-16 code units, after entity parsing
_MAX_CAPTION_LENGTH = 1024
_MAX_PHOTO_BYTES = 10 * 1024 * 1024
_MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF")


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (what Telegram reports for the photo); 1x1 otherwise."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 1, 1
_MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # getFile refuses bigger files on the public Bot API
_MAX_BODY = 64 * 1024 * 1024
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]*")
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_DEFAULT_USER_ID = 111222333
_WEBHOOK_HEADER = "X-Telegram-Bot-Api-Secret-Token"

TELEGRAM_RETRY_DELAYS: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""Seconds waited before each retry of a failed webhook delivery.

Derived from ``tdlib/telegram-bot-api`` ``WebhookActor::on_update_error``: the first
retry is immediate, then the delay doubles, capped at a random 60-120 s; the real
server keeps going until the update expires (24 h) — the emulator stops after these."""

ALL_UPDATE_TYPES: tuple[str, ...] = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
    "managed_bot",
    "guest_message",
)
DEFAULT_ALLOWED_UPDATES: tuple[str, ...] = tuple(
    kind for kind in ALL_UPDATE_TYPES if kind not in ("chat_member", "message_reaction", "message_reaction_count")
)
"""What Telegram sends when ``allowed_updates`` was never given (or given empty)."""

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# Parameters that are strings even when they look like JSON (form bodies carry every value as a string).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "action",
        "url",
        "secret_token",
        "file_id",
        "ip_address",
        "business_connection_id",
        "message_effect_id",
        "callback_query_id",
        "inline_message_id",
        "emoji",
        "title",
        "description",
        "name",
        "query",
    }
)

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    500: "Internal Server Error",
}
# Telegram's nginx front answers these itself, with an HTML page instead of the JSON envelope.
_NGINX_PAGES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}

_FILE_PREFIXES = {"photo": "AgACAgEAAxkBAAI", "voice": "AwACAgEAAxkBAAI", "document": "BQACAgEAAxkBAAI"}
_FILE_FOLDERS = {"photo": ("photos", ".jpg"), "voice": ("voice", ".oga"), "document": ("documents", "")}

_COMMAND = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z][A-Za-z0-9_]{3,31})?(?![\w/@])")
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?!\w)")
_URL = re.compile(r"(?<!\w)https?://[^\s<>\"]+")


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass
class BotCall:
    """One Bot API request the emulator received, kept in :attr:`TelegramEmulator.calls`."""

    method: str
    """The method as written in the URL (``sendMessage``; Telegram ignores its case)."""
    params: dict[str, Any]
    """Query string and body parameters, normalised to JSON types whatever the encoding:
    ``chat_id`` and other numbers as ``int``, flags as ``bool``, objects and arrays decoded.
    Uploaded files appear as ``{"filename", "content_type", "size"}``."""
    time: float
    """Wall-clock arrival time (``time.time()``)."""
    status: int = 0
    """HTTP status of the answer (0 while the call is still being answered, e.g. a long poll)."""
    http_method: str = "POST"
    content_type: str = ""
    """Content type of the request body ("" when there was none)."""
    token: str = ""
    """The token in the URL, even when wrong."""


@dataclass
class Failure:
    """An injected failure for one call; see :meth:`TelegramEmulator.fail_next`."""

    status: int = 429
    retry_after: int | None = None
    """Sent as ``parameters.retry_after`` (and in the description, as Telegram does, for 429)."""
    description: str | None = None
    """``None`` uses the typical Telegram description for ``status``."""
    drop_connection: bool = False
    """Reset the TCP connection instead of answering."""
    delay: float = 0.0
    """Seconds to wait before failing."""


@dataclass
class StoredFile:
    """A file the bot can fetch with ``getFile`` and download from the file route."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes

    def as_file(self) -> dict[str, Any]:
        """The Bot API ``File`` object ``getFile`` answers with."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class WebhookConfig:
    """What ``setWebhook`` registered; :attr:`TelegramEmulator.webhook` while set."""

    url: str
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    ip_address: str | None = None
    has_custom_certificate: bool = False


@dataclass
class WebhookDelivery:
    """One POST of an Update to the webhook, kept in :attr:`TelegramEmulator.deliveries`."""

    update: dict[str, Any]
    attempt: int
    """1 for the first try of this update, 2 for its first retry, ..."""
    time: float
    status: int | None = None
    """HTTP status of the webhook's answer; ``None`` when the connection failed."""
    error: str | None = None
    """Why the connection failed (``status`` is then ``None``)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The headers the emulator sent."""

    @property
    def ok(self) -> bool:
        """Whether Telegram would count this delivery as acknowledged (any 2xx)."""
        return self.status is not None and 200 <= self.status <= 299


class _ApiError(Exception):
    """An error answer in Telegram's envelope."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class _Poll:
    """A getUpdates request being answered; another poll or setWebhook can end it."""

    conflict: str | None = None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram counts in."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _ok(result: Any, description: str | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description is not None:
        body["description"] = description
    return web.Response(body=orjson.dumps(body), content_type=_JSON)


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON)


def _nginx_page(status: int) -> web.Response:
    title = _NGINX_PAGES[status]
    page = f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
    page += "<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
    return web.Response(status=status, text=page, content_type="text/html")


def _coerce_string(key: str, value: str) -> Any:
    """A form / query string value as the JSON type Telegram would read it as."""
    if key in _STRING_PARAMS:
        return value
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return decoded if isinstance(decoded, (int, float, bool, list, dict)) else value


def _coerce_json(key: str, value: Any) -> Any:
    """A JSON body value normalised the same way (``chat_id`` "42" -> 42, objects sent as strings decoded)."""
    if key in _STRING_PARAMS:
        return value if isinstance(value, str) else ("" if value is None else str(value))
    if isinstance(value, str):
        return _coerce_string(key, value)
    return value


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, (str, int)) and str(value).lower() in ("true", "1"))


def _int_param(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        raise _ApiError(400, f'Bad Request: parameter "{key}" must be a Number') from None


def _update_kind(update: Mapping[str, Any]) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


def _update_chat_id(update: Mapping[str, Any]) -> int | None:
    """The chat an update belongs to (Telegram keeps one delivery queue per chat)."""
    for key, value in update.items():
        if not isinstance(value, dict):
            continue
        chat = value.get("chat")
        if chat is None and isinstance(value.get("message"), dict):
            chat = value["message"].get("chat")
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return int(chat["id"])
        sender = value.get("from")
        if key != "update_id" and isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return int(sender["id"])
    return None


def _auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram's servers detect in plain user text: commands, mentions, links."""
    found: list[tuple[int, int, str]] = []
    for pattern, kind in ((_COMMAND, "bot_command"), (_MENTION, "mention"), (_URL, "url")):
        for match in pattern.finditer(text):
            value = match.group().rstrip(".,;:!?)]'")
            if value:
                found.append((match.start(), len(value), kind))
    found.sort()
    entities: list[dict[str, Any]] = []
    end = -1
    for start, length, kind in found:
        if start < end:  # overlapping (e.g. a mention inside a URL)
            continue
        end = start + length
        entities.append({"offset": utf16_length(text[:start]), "length": utf16_length(text[start:end]), "type": kind})
    return entities


def _timestamp(date: int | float | dtm.datetime | None) -> int:
    if date is None:
        return int(time.time())
    if isinstance(date, dtm.datetime):
        return int(date.timestamp())
    return int(date)


# --------------------------------------------------------------------------------------------
# Formatting: the parse modes, as tdlib parses them (entity offsets in UTF-16 units)
# --------------------------------------------------------------------------------------------


class _ParseError(Exception):
    pass


class _Builder:
    """Collects parsed plain text and its entities."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.utf16 = 0
        self.entities: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.utf16 += utf16_length(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.utf16 > start:
            self.entities.append({"offset": start, "length": self.utf16 - start, "type": kind, **extra})

    def text(self) -> str:
        return "".join(self.parts)


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Port of tdlib's ``parse_markdown_v2`` (blockquote markers are accepted but not turned into entities)."""
    out = _Builder()
    stack: list[tuple[str, int, int, dict[str, Any]]] = []  # kind, utf16 start, char index, extra
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "\\" and nxt and 0 < ord(nxt) <= 126:
            out.add(nxt)
            i += 2
            continue
        in_code = bool(stack) and stack[-1][0] in ("code", "pre")
        reserved = "`" if in_code else _MDV2_RESERVED
        if c not in reserved:
            out.add(c)
            i += 1
            continue
        top = stack[-1][0] if stack else None
        ends = (
            (top == "bold" and c == "*")
            or (top == "italic" and c == "_" and nxt != "_")
            or (top == "underline" and c == "_" and nxt == "_")
            or (top == "strikethrough" and c == "~")
            or (top == "spoiler" and c == "|" and nxt == "|")
            or (top == "code" and c == "`")
            or (top == "pre" and text.startswith("```", i))
            or (top in ("text_link", "custom_emoji") and c == "]")
        )
        if ends:
            kind, start, _, attributes = stack.pop()
            i += {"underline": 2, "spoiler": 2, "pre": 3}.get(kind, 1)
            if kind in ("text_link", "custom_emoji"):
                url = ""
                if i < n and text[i] == "(":
                    url_start = i + 1
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != ")":
                        if text[i] == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                            chars.append(text[i + 1])
                            i += 2
                            continue
                        chars.append(text[i])
                        i += 1
                    if i >= n:
                        raise _ParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, url_start)}")
                    i += 1
                    url = "".join(chars)
                elif kind == "text_link":
                    url = out.text()[-(out.utf16 - start) :] if out.utf16 > start else ""
                if kind == "custom_emoji":
                    match = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                    if match is None:
                        raise _ParseError("Custom emoji URL must have an emoji identifier")
                    out.entity(kind, start, custom_emoji_id=match.group(1))
                elif url:
                    out.entity(kind, start, url=url)
            else:
                out.entity(kind, start, **attributes)
            continue
        # the beginning of an entity
        if c == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # blockquote marker
            continue
        if c == "*" and text.startswith("**>", i) and (i == 0 or text[i - 1] == "\n"):
            i += 3  # expandable blockquote marker
            continue
        begin = i
        extra: dict[str, Any] = {}
        if c == "_":
            kind = "underline" if nxt == "_" else "italic"
            i += 2 if nxt == "_" else 1
        elif c == "*":
            kind, i = "bold", i + 1
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and nxt == "|":
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and nxt == "[":
            kind, i = "custom_emoji", i + 2
        elif c == "`" and text.startswith("```", i):
            kind = "pre"
            i += 3
            language_end = i
            while language_end < n and not text[language_end].isspace() and text[language_end] != "`":
                language_end += 1
            if language_end != i and language_end < n and text[language_end] != "`":
                extra["language"] = text[i:language_end]
                i = language_end
            if i < n and text[i] in "\r\n":
                i += 2 if i + 1 < n and text[i + 1] in "\r\n" and text[i + 1] != text[i] else 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise _ParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        stack.append((kind, out.utf16, begin, extra))
    if stack:
        kind, _, begin, _ = stack[-1]
        raise _ParseError(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {_byte_offset(text, begin)}")
    return out.text(), sorted(out.entities, key=lambda e: (e["offset"], -e["length"]))


def _parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Port of tdlib's legacy ``parse_markdown`` (``*bold*``, ``_italic_``, code, pre, ``[text](url)``)."""
    out = _Builder()
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        begin = i
        start = out.utf16
        if c == "[":
            close = text.find("]", i + 1)
            if close < 0:
                raise _ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}")
            out.add(text[i + 1 : close])
            i = close + 1
            if i < n and text[i] == "(":
                end = text.find(")", i)
                if end >= 0:
                    url = text[i + 1 : end]
                    if url:
                        out.entity("text_link", start, url=url)
                    i = end + 1
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise _ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}")
            body = text[i + 3 : end]
            language = ""
            first_line, newline, rest = body.partition("\n")
            if newline and first_line and not any(ch.isspace() for ch in first_line):
                language, body = first_line, rest
            out.add(body)
            out.entity("pre", start, **({"language": language} if language else {}))
            i = end + 3
            continue
        end = text.find(c, i + 1)
        if end < 0:
            raise _ParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}")
        out.add(text[i + 1 : end])
        out.entity({"_": "italic", "*": "bold", "`": "code"}[c], start)
        i = end + 1
    return out.text(), out.entities


_HTML_TAGS = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_HTML_ATTRIBUTE = re.compile(r"""\s*([A-Za-z_:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Port of tdlib's ``parse_html``: the supported tags, attributes and entities, nothing else."""
    out = _Builder()
    stack: list[tuple[str, int, dict[str, Any]]] = []  # tag name, utf16 start, attributes
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            match = _HTML_ENTITY.match(text, i)
            if match:
                out.add(html.unescape(match.group()))
                i = match.end()
            else:
                out.add("&")
                i += 1
            continue
        if c != "<":
            out.add(c)
            i += 1
            continue
        begin = i
        if i + 1 < n and text[i + 1] == "/":
            close = text.find(">", i)
            if close < 0:
                raise _ParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            name = text[i + 2 : close].strip().lower()
            if not stack:
                raise _ParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            open_name, start, attributes = stack.pop()
            if name and name != open_name:
                raise _ParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{open_name}>", found "</{name}>"'
                )
            kind = _HTML_TAGS[open_name]
            extra: dict[str, Any] = {}
            if kind == "text_link":
                url = attributes.get("href", "")
                if url:
                    out.entity(kind, start, url=url)
            elif kind == "custom_emoji":
                out.entity(kind, start, custom_emoji_id=attributes.get("emoji-id", ""))
            elif (
                kind == "code"
                and stack
                and stack[-1][0] == "pre"
                and attributes.get("class", "").startswith("language-")
            ):
                # <pre><code class="language-x"> is one "pre" entity with a language
                stack[-1][2]["language"] = attributes["class"].removeprefix("language-")
            else:
                if kind == "pre" and attributes.get("language"):
                    extra["language"] = attributes["language"]
                out.entity(kind, start, **extra)
            i = close + 1
            continue
        j = i + 1
        while j < n and not text[j].isspace() and text[j] not in "/>":
            j += 1
        if j >= n:
            raise _ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        name = text[i + 1 : j].lower()
        if name not in _HTML_TAGS:
            raise _ParseError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}')
        close = text.find(">", j)
        if close < 0:
            raise _ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        attributes = {
            m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
            for m in _HTML_ATTRIBUTE.finditer(text[j:close].rstrip("/"))
        }
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise _ParseError('Tag "span" must have class "tg-spoiler"')
        if name == "pre":
            attributes.pop("language", None)  # only a nested <code class="language-..."> sets it
        stack.append((name, out.utf16, attributes))
        i = close + 1
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.text(), sorted(out.entities, key=lambda e: (e["offset"], -e["length"]))


_PARSERS: dict[str, Callable[[str], tuple[str, list[dict[str, Any]]]]] = {
    "markdownv2": _parse_markdown_v2,
    "markdown": _parse_markdown,
    "html": _parse_html,
}


def format_text(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of ``text`` as Telegram parses it, stripped of outer whitespace.

    Raises ``_ApiError`` with Telegram's description for bad markup or an unknown parse mode.
    """
    entities: list[dict[str, Any]] = []
    if parse_mode:
        parser = _PARSERS.get(parse_mode.lower())
        if parser is None:
            raise _ApiError(400, "Bad Request: unsupported parse_mode")
        try:
            text, entities = parser(text)
        except _ParseError as exc:
            raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
    stripped = text.lstrip()
    shift = utf16_length(text) - utf16_length(stripped)
    stripped = stripped.rstrip()
    limit = utf16_length(stripped)
    kept: list[dict[str, Any]] = []
    for entity in entities:
        start = max(0, entity["offset"] - shift)
        end = min(limit, entity["offset"] + entity["length"] - shift)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class TelegramEmulator(Served):
    """A fake Telegram Bot API server for one bot; use ``async with TelegramEmulator() as emu:``.

    Everything is recorded: :attr:`calls` (every request), :meth:`sent_messages`,
    :meth:`chat_actions`, :attr:`deliveries` (webhook POSTs). Waits are event-based
    (:meth:`wait_for_messages`, :meth:`wait_for_calls`).
    """

    def __init__(
        self,
        token: str = "123456789:AAEmulatorTestTokenForBotline000000",
        *,
        bot_username: str = "botline_test_bot",
        bot_first_name: str = "Botline",
        retry_delays: Sequence[float] = TELEGRAM_RETRY_DELAYS,
        time_scale: float = 1.0,
        webhook_timeout: float = 60.0,
        strict_chats: bool = False,
        first_update_id: int = 900000001,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the emulator; nothing listens until :meth:`start`.

        ``token`` is the only accepted bot token; its numeric prefix is the bot's
        user id. ``retry_delays`` are the waits before each webhook retry of
        :meth:`push_with_retries` and ``time_scale`` multiplies them and any
        ``Retry-After`` the webhook answers with (use e.g. 0.01 in tests).
        ``webhook_timeout`` is how long a webhook may take to answer (60 s on Telegram).
        ``strict_chats`` makes sends to chats never seen in an update fail with
        ``Bad Request: chat not found``, as Telegram does. ``port=0`` picks a free port.
        """
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        """The bot's ``User`` object (``from`` of every message it sends)."""
        self.calls: list[BotCall] = []
        """Every Bot API and file request, in arrival order."""
        self.deliveries: list[WebhookDelivery] = []
        """Every webhook POST attempt, in order."""
        self.dropped_updates: list[dict[str, Any]] = []
        """Updates not delivered because their type is not in the bot's ``allowed_updates``."""
        self.webhook: WebhookConfig | None = None
        """The webhook set with ``setWebhook``, or ``None`` (polling)."""
        self.allowed_updates: list[str] | None = None
        """The bot's current ``allowed_updates`` (``None`` = Telegram's default set)."""
        self.url = ""
        """``http://<host>:<port>`` once started."""
        self.retry_delays = tuple(retry_delays)
        self.time_scale = time_scale
        self.webhook_timeout = webhook_timeout
        self.strict_chats = strict_chats
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self._host = host
        self._port = port
        self._pending: list[dict[str, Any]] = []
        self._in_flight = 0
        self._update_ids = itertools.count(first_update_id)
        self._message_ids: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_numbers = itertools.count()
        self._sent: list[dict[str, Any]] = []
        self._actions: list[dict[str, Any]] = []
        self._failures: dict[str, deque[Failure]] = {}
        self._poll: _Poll | None = None
        self._chat_locks: dict[int | None, asyncio.Lock] = {}
        self._changes = Changes()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getme": self._get_me,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "sendvoice": self._send_voice,
            "sendaudio": self._send_audio,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
        }

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``base_url`` for ``telegram.Bot`` / ``ApplicationBuilder`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """``base_file_url`` for ``telegram.Bot`` / ``ApplicationBuilder``."""
        return f"{self.url}/file/bot"

    @property
    def api_url(self) -> str:
        """``<url>/bot<token>``: append ``/<method>`` for a raw HTTP call."""
        return f"{self.url}/bot{self.token}"

    async def start(self) -> None:
        """Start listening; :attr:`url` is valid afterwards."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._download)
        # handler_cancellation: a client hanging up cancels its handler (ends its long poll).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.url = f"http://{self._host}:{site.port}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Stop listening, end held long polls and close the webhook client."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ----------------------------------------------------------------- test controls

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int = 1,
        times: int = 1,
        description: str | None = None,
        drop_connection: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (any case; ``"*"`` = any method) fail.

        429 answers carry ``parameters.retry_after`` = ``retry_after`` and the description
        ``Too Many Requests: retry after N``, like Telegram's flood control. 502/503/504
        answer with nginx's HTML page (as Telegram's front end does); other statuses
        use Telegram's JSON envelope with ``description`` or a typical one.
        """
        failure = Failure(
            status=status,
            retry_after=retry_after if status == 429 else None,
            description=description,
            drop_connection=drop_connection,
            delay=delay,
        )
        self._failures.setdefault(method.lower(), deque()).extend(Failure(**vars(failure)) for _ in range(times))

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends to ``chat_id`` answer 403 ``Forbidden: bot was blocked by the user``."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        """Undo :meth:`block`."""
        self._blocked.discard(chat_id)

    def register_file(
        self,
        data: bytes,
        *,
        kind: str = "document",
        file_name: str | None = None,
        file_id: str | None = None,
        file_unique_id: str | None = None,
        file_path: str | None = None,
    ) -> StoredFile:
        """Store bytes the bot can fetch with ``getFile`` and download.

        ``kind`` (``photo``, ``voice``, ``document``) shapes the generated ids and
        ``file_path`` (``photos/file_0.jpg``, ``voice/file_1.oga``, ``documents/file_2.pdf``).
        """
        number = next(self._file_numbers)
        prefix = _FILE_PREFIXES.get(kind, _FILE_PREFIXES["document"])
        folder, extension = _FILE_FOLDERS.get(kind, _FILE_FOLDERS["document"])
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=file_id or prefix + secrets.token_urlsafe(48)[:56],
            file_unique_id=file_unique_id or "AgAD" + secrets.token_urlsafe(9)[:12],
            file_path=file_path or f"{folder}/file_{number}{extension}",
            data=data,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def clear(self) -> None:
        """Forget recorded calls, sends, chat actions and deliveries (state such as the webhook stays)."""
        self.calls.clear()
        self._sent.clear()
        self._actions.clear()
        self.deliveries.clear()
        self.dropped_updates.clear()

    # ----------------------------------------------------------------- recordings

    def calls_to(self, method: str) -> list[BotCall]:
        """The recorded calls of ``method`` (case-insensitive)."""
        wanted = method.lower()
        return [call for call in self.calls if call.method.lower() == wanted]

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent successfully, in order, optionally for one chat.

        Each is the normalised ``sendMessage`` parameters (``chat_id``, ``text``,
        ``parse_mode``, ...) plus ``message_id`` and ``message`` (the Message answered).
        """
        return [sent for sent in self._sent if chat_id is None or sent["chat_id"] == chat_id]

    def chat_actions(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Accepted ``sendChatAction`` calls: normalised parameters plus ``time``."""
        return [action for action in self._actions if chat_id is None or action["chat_id"] == chat_id]

    @property
    def pending_update_count(self) -> int:
        """Updates not yet confirmed by ``getUpdates`` or acknowledged by the webhook."""
        return len(self._pending) + self._in_flight

    async def wait_for_messages(
        self, n: int, timeout: float = 5, *, chat_id: int | str | None = None
    ) -> list[dict[str, Any]]:
        """Wait until at least ``n`` messages were sent (to ``chat_id``); TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.sent_messages(chat_id)) >= n, timeout)
        return self.sent_messages(chat_id)

    async def wait_for_calls(self, method: str, n: int = 1, timeout: float = 5) -> list[BotCall]:
        """Wait until ``method`` was called at least ``n`` times; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.calls_to(method)) >= n, timeout)
        return self.calls_to(method)

    async def wait_for_deliveries(self, n: int, timeout: float = 5) -> list[WebhookDelivery]:
        """Wait until at least ``n`` webhook POST attempts finished; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.deliveries) >= n, timeout)
        return list(self.deliveries)

    # ----------------------------------------------------------------- update builders

    def text_update(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Ana",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        chat_type: str = "private",
        title: str | None = None,
        message_id: int | None = None,
        reply_to: int | Mapping[str, Any] | None = None,
        entities: list[dict[str, Any]] | None = None,
        date: int | float | dtm.datetime | None = None,
    ) -> dict[str, Any]:
        """An Update with a text message, exactly as the Bot API sends it.

        ``chat_type`` is ``private`` (``chat_id`` is then the user's id unless
        ``user_id`` differs), ``group``, ``supergroup`` (give a negative ``chat_id``
        and a ``title``) or ``channel`` (a ``channel_post`` without ``from``).
        ``entities=None`` detects commands (``/start@bot``), mentions and links the
        way Telegram does; ``[]`` sends none. ``reply_to`` is a message id known to
        the emulator in that chat (sent by the bot or built here) or a Message dict.
        """
        message = self._message(
            chat_id,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            chat_type=chat_type,
            title=title,
            message_id=message_id,
            reply_to=reply_to,
            date=date,
        )
        message["text"] = text
        found = _auto_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        return self._wrap(message)

    def photo_update(
        self,
        chat_id: int,
        data: bytes = b"\xff\xd8\xff\xe0fake-jpeg",
        *,
        caption: str | None = None,
        width: int = 1280,
        height: int = 960,
        **sender: Any,
    ) -> dict[str, Any]:
        """An Update with a photo: three ``PhotoSize`` entries (smallest first), each downloadable.

        ``sender`` takes the keyword arguments of :meth:`text_update` that describe the
        chat and sender (``user_id``, ``first_name``, ``chat_type``, ``title``, ``date``, ...).
        Every size serves ``data``.
        """
        message = self._message(chat_id, **sender)
        sizes = []
        for scale in (0.0703125, 0.25, 1.0):
            stored = self.register_file(data, kind="photo")
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": len(data),
                    "width": max(1, round(width * scale)),
                    "height": max(1, round(height * scale)),
                }
            )
        message["photo"] = sizes
        self._add_caption(message, caption)
        return self._wrap(message)

    def voice_update(
        self,
        chat_id: int,
        data: bytes = b"OggS\x00fake-opus",
        *,
        duration: int = 3,
        mime_type: str = "audio/ogg",
        **sender: Any,
    ) -> dict[str, Any]:
        """An Update with a voice note (downloadable ``data``); ``sender`` as in :meth:`photo_update`."""
        message = self._message(chat_id, **sender)
        stored = self.register_file(data, kind="voice")
        message["voice"] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return self._wrap(message)

    def document_update(
        self,
        chat_id: int,
        data: bytes = b"%PDF-1.4 fake",
        *,
        file_name: str = "document.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        **sender: Any,
    ) -> dict[str, Any]:
        """An Update with a document (downloadable ``data``); ``sender`` as in :meth:`photo_update`."""
        message = self._message(chat_id, **sender)
        stored = self.register_file(data, kind="document", file_name=file_name)
        message["document"] = {
            "file_name": file_name,
            "mime_type": mime_type,
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        self._add_caption(message, caption)
        return self._wrap(message)

    def edited_message_update(
        self,
        message: Mapping[str, Any],
        text: str,
        *,
        edit_date: int | float | dtm.datetime | None = None,
    ) -> dict[str, Any]:
        """An ``edited_message`` Update: ``message`` (e.g. ``update["message"]``) with new text."""
        edited = {key: value for key, value in message.items() if key not in ("entities", "text")}
        edited["text"] = text
        entities = _auto_entities(text)
        if entities:
            edited["entities"] = entities
        edited["edit_date"] = _timestamp(edit_date)
        chat_id = int(edited["chat"]["id"])
        self._messages[(chat_id, int(edited["message_id"]))] = edited
        kind = "edited_channel_post" if edited["chat"].get("type") == "channel" else "edited_message"
        return {"update_id": next(self._update_ids), kind: edited}

    def callback_query_update(
        self,
        chat_id: int,
        data: str,
        *,
        message: Mapping[str, Any] | None = None,
        user_id: int | None = None,
        first_name: str = "Ana",
        username: str | None = None,
    ) -> dict[str, Any]:
        """A ``callback_query`` Update (an inline button pressed) on ``message``.

        ``message`` defaults to the last message the bot sent to ``chat_id``.
        """
        if message is None:
            sent = self.sent_messages(chat_id)
            if not sent:
                raise ValueError(f"the bot sent nothing to chat {chat_id}; pass message=")
            message = sent[-1]["message"]
        chat = message["chat"]
        user = self._user(
            user_id if user_id is not None else self._default_user(chat_id, chat["type"]),
            first_name,
            None,
            username,
            None,
        )
        query = {
            "id": str(secrets.randbits(63)),
            "from": user,
            "message": dict(message),
            "chat_instance": str(-secrets.randbits(62)),
            "data": data,
        }
        return {"update_id": next(self._update_ids), "callback_query": query}

    def _wrap(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = "channel_post" if message["chat"]["type"] == "channel" else "message"
        return {"update_id": next(self._update_ids), kind: message}

    @staticmethod
    def _add_caption(message: dict[str, Any], caption: str | None) -> None:
        if caption is not None:
            message["caption"] = caption
            entities = _auto_entities(caption)
            if entities:
                message["caption_entities"] = entities

    @staticmethod
    def _default_user(chat_id: int, chat_type: str) -> int:
        return chat_id if chat_type == "private" else _DEFAULT_USER_ID

    @staticmethod
    def _user(
        user_id: int, first_name: str, last_name: str | None, username: str | None, language_code: str | None
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def _message(
        self,
        chat_id: int,
        *,
        user_id: int | None = None,
        first_name: str = "Ana",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        chat_type: str = "private",
        title: str | None = None,
        message_id: int | None = None,
        reply_to: int | Mapping[str, Any] | None = None,
        date: int | float | dtm.datetime | None = None,
    ) -> dict[str, Any]:
        """A Message from a user (the common part of every builder); remembered for replies."""
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        if chat_type == "private":
            chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": first_name}
            if last_name is not None:
                chat["last_name"] = last_name
            if username is not None:
                chat["username"] = username
        else:
            chat = {"id": chat_id, "type": chat_type, "title": title or "Test group"}
        self._chats[chat_id] = chat
        if message_id is None:
            message_id = self._next_message_id(chat_id)
        else:
            self._message_ids[chat_id] = max(self._message_ids.get(chat_id, 0), message_id)
        message: dict[str, Any] = {"message_id": message_id}
        if chat_type == "channel":
            message["sender_chat"] = chat
        else:
            sender = user_id if user_id is not None else self._default_user(chat_id, chat_type)
            message["from"] = self._user(sender, first_name, last_name, username, language_code)
        message["chat"] = chat
        message["date"] = _timestamp(date)
        if reply_to is not None:
            message["reply_to_message"] = self._replied(chat_id, reply_to)
        self._messages[(chat_id, message_id)] = message
        return message

    def _replied(self, chat_id: int, reply_to: int | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(reply_to, Mapping):
            original = dict(reply_to)
        else:
            found = self._messages.get((chat_id, reply_to))
            if found is None:
                raise KeyError(f"no message {reply_to} in chat {chat_id}; pass the Message dict instead")
            original = dict(found)
        original.pop("reply_to_message", None)  # Telegram nests one level only
        return original

    def _next_message_id(self, chat_id: int) -> int:
        self._message_ids[chat_id] = self._message_ids.get(chat_id, 0) + 1
        return self._message_ids[chat_id]

    # ----------------------------------------------------------------- delivery

    def _allowed(self, update: Mapping[str, Any], allowed: Iterable[str] | None) -> bool:
        return _update_kind(update) in (allowed or DEFAULT_ALLOWED_UPDATES)

    def queue_update(self, update: dict[str, Any]) -> bool:
        """Queue an Update for ``getUpdates``; wakes a waiting long poll at once.

        Like Telegram, an update whose type is outside the bot's ``allowed_updates`` is
        dropped (kept in :attr:`dropped_updates`) and ``False`` is returned.
        """
        if not self._allowed(update, self.allowed_updates):
            self.dropped_updates.append(update)
            return False
        keys = [pending["update_id"] for pending in self._pending]
        position = bisect.bisect_right(keys, update["update_id"])
        self._pending.insert(position, update)
        self._changes.notify()
        return True

    async def deliver(self, update: dict[str, Any]) -> int | None:
        """Deliver an Update the way the bot asked for it.

        With a webhook set: :meth:`push_with_retries` and return the final status.
        Otherwise: :meth:`queue_update` for ``getUpdates`` and return ``None``.
        """
        allowed = self.webhook.allowed_updates if self.webhook is not None else None
        if not self._allowed(update, allowed if allowed is not None else self.allowed_updates):
            self.dropped_updates.append(update)
            return None
        if self.webhook is None:
            self.queue_update(update)
            return None
        return await self.push_with_retries(update)

    async def push(self, update: Mapping[str, Any], *, attempt: int = 1) -> int:
        """POST ``update`` once to the webhook, as Telegram does; return the HTTP status.

        The request carries ``Content-Type: application/json`` and, when a secret was
        given to ``setWebhook``, ``X-Telegram-Bot-Api-Secret-Token``. Connection
        failures and timeouts (``webhook_timeout``) raise ``aiohttp.ClientError`` /
        ``TimeoutError`` after being recorded. Raises ``RuntimeError`` without a webhook.
        """
        status, _ = await self._post_update(update, attempt)
        return status

    async def push_with_retries(self, update: Mapping[str, Any], *, retry_delays: Sequence[float] | None = None) -> int:
        """POST ``update`` until the webhook answers 2xx, following Telegram's retry schedule.

        Any non-2xx answer, connection failure or timeout is retried after the next of
        ``retry_delays`` (default: the emulator's), times :attr:`time_scale`; a
        ``Retry-After`` header on the answer replaces that delay (clamped to 0-3600 s, also
        scaled). Updates of one chat go out one at a time, in call order. Returns the
        status of the last attempt; re-raises the connection error if the last attempt
        could not connect.
        """
        delays = self.retry_delays if retry_delays is None else tuple(retry_delays)
        lock = self._chat_locks.setdefault(_update_chat_id(update), asyncio.Lock())
        self._in_flight += 1
        try:
            async with lock:
                attempt = 1
                while True:
                    retry_after: float | None = None
                    try:
                        status, retry_after = await self._post_update(update, attempt)
                    except (aiohttp.ClientError, TimeoutError, OSError):
                        if attempt > len(delays):
                            raise
                    else:
                        if 200 <= status <= 299 or attempt > len(delays):
                            return status
                    delay = delays[attempt - 1] if retry_after is None else min(max(retry_after, 0.0), 3600.0)
                    await asyncio.sleep(delay * self.time_scale)
                    attempt += 1
        finally:
            self._in_flight -= 1

    async def _post_update(self, update: Mapping[str, Any], attempt: int) -> tuple[int, float | None]:
        webhook = self.webhook
        if webhook is None:
            raise RuntimeError("no webhook is set; call setWebhook first (or use queue_update)")
        if self._session is None:
            raise RuntimeError("the emulator is not running")
        headers = {"Content-Type": _JSON}
        if webhook.secret_token:
            headers[_WEBHOOK_HEADER] = webhook.secret_token
        delivery = WebhookDelivery(update=dict(update), attempt=attempt, time=time.time(), headers=headers)
        try:
            async with self._session.post(
                webhook.url,
                data=orjson.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                delivery.status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delivery.error = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                self._record_webhook_error("Connection timed out")
            elif isinstance(exc, aiohttp.ClientConnectorError):
                self._record_webhook_error("Connection refused")
            else:
                self._record_webhook_error(delivery.error)
            self.deliveries.append(delivery)
            self._changes.notify()
            raise
        if not delivery.ok:
            reason = response.reason or ""
            self._record_webhook_error(f"Wrong response from the webhook: {delivery.status} {reason}".rstrip())
        self.deliveries.append(delivery)
        self._changes.notify()
        seconds: float | None = None
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                seconds = float(retry_after)
        return delivery.status, seconds

    def _record_webhook_error(self, message: str) -> None:
        self.last_error_date = int(time.time())
        self.last_error_message = message

    # ----------------------------------------------------------------- HTTP handlers

    async def _api(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        method = request.match_info["method"]
        call = BotCall(
            method=method,
            params={},
            time=time.time(),
            http_method=request.method,
            content_type=request.content_type if request.body_exists else "",
            token=token,
        )
        self.calls.append(call)
        try:
            try:
                call.params = await self._read_params(request)
            finally:
                self._changes.notify()
            if token != self.token:
                if _TOKEN_SHAPE.fullmatch(token):
                    raise _ApiError(401, "Unauthorized")
                raise _ApiError(404, "Not Found")
            polling = method.lower() == "getupdates"
            handler = self._methods.get(method.lower())
            if handler is None and not polling:
                raise _ApiError(404, "Not Found")
            failure = self._next_failure(method)
            if failure is not None:
                if failure.delay:
                    await asyncio.sleep(failure.delay)
                if failure.drop_connection:
                    call.status = -1
                    reset_connection(request)
                    return web.Response(status=500)  # never reaches the client
                response = self._failure_response(failure)
            elif polling or handler is None:
                response = await self._get_updates(call.params)
            else:
                result = handler(call.params)
                response = result if isinstance(result, web.Response) else _ok(result)
        except _ApiError as exc:
            response = _error(exc.status, exc.description, exc.parameters)
        call.status = response.status
        self._changes.notify()
        return response

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {key: _coerce_string(key, value) for key, value in request.query.items()}
        if not request.body_exists:
            return params
        content_type = request.content_type
        if content_type == _JSON:
            raw = await request.read()
            if raw.strip():
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise _ApiError(400, "Bad Request: can't parse JSON object") from None
                if not isinstance(body, dict):
                    raise _ApiError(400, "Bad Request: can't parse JSON object")
                params.update({key: _coerce_json(key, value) for key, value in body.items()})
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    params[key] = {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "size": len(data),
                        "data": data,
                    }
                else:
                    params[key] = _coerce_string(key, str(value))
        return params

    def _next_failure(self, method: str) -> Failure | None:
        for key in (method.lower(), "*"):
            queue = self._failures.get(key)
            if queue:
                return queue.popleft()
        return None

    @staticmethod
    def _failure_response(failure: Failure) -> web.Response:
        if failure.status in _NGINX_PAGES and failure.description is None:
            return _nginx_page(failure.status)
        if failure.status == 429:
            seconds = failure.retry_after if failure.retry_after is not None else 1
            description = failure.description or f"Too Many Requests: retry after {seconds}"
            return _error(429, description, {"retry_after": seconds})
        description = failure.description or _DEFAULT_DESCRIPTIONS.get(failure.status, "Internal Server Error")
        parameters = {"retry_after": failure.retry_after} if failure.retry_after is not None else None
        return _error(failure.status, description, parameters)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        file_path = request.match_info["file_path"]
        call = BotCall(method="file", params={"file_path": file_path}, time=time.time(), http_method="GET", token=token)
        self.calls.append(call)
        stored = self._files_by_path.get(file_path) if token == self.token else None
        if stored is None:
            response = _error(404, "Not Found")
        else:
            response = web.Response(body=stored.data, content_type="application/octet-stream")
        call.status = response.status
        self._changes.notify()
        return response

    # ----------------------------------------------------------------- methods

    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _drop_pending(self) -> None:
        self._pending.clear()

    def _set_allowed_updates(self, value: Any) -> list[str] | None:
        """Telegram's reading of ``allowed_updates``: unknown names ignored, none known = default."""
        if value is None or value == "":
            return self.allowed_updates
        if not isinstance(value, list):
            return self.allowed_updates
        known = [str(name).lower() for name in value if str(name).lower() in ALL_UPDATE_TYPES]
        self.allowed_updates = known or None
        return self.allowed_updates

    def _set_webhook(self, params: dict[str, Any]) -> web.Response:
        url = str(params.get("url") or "")
        if not url:
            return self._delete_webhook(params)
        if not re.match(r"https?://[^/\s]+", url):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        secret = None if secret is None else str(secret)
        if secret is not None:
            if len(secret) > 256:
                raise _ApiError(400, "Bad Request: secret token is too long")
            if not _SECRET_TOKEN.fullmatch(secret):
                raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        max_connections = _int_param(params, "max_connections", 40)
        if not 1 <= max_connections <= 100:
            raise _ApiError(400, "Bad Request: max_connections must be between 1 and 100")
        if _flag(params.get("drop_pending_updates")):
            self._drop_pending()
        allowed = self._set_allowed_updates(params.get("allowed_updates"))
        config = WebhookConfig(
            url=url,
            secret_token=secret or None,
            allowed_updates=allowed,
            max_connections=max_connections,
            ip_address=str(params["ip_address"]) if params.get("ip_address") else None,
            has_custom_certificate=isinstance(params.get("certificate"), dict),
        )
        unchanged = self.webhook == config
        self.webhook = config
        if self._poll is not None:
            self._poll.conflict = "Conflict: terminated by setWebhook request"
            self._changes.notify()
        if not unchanged:
            self.last_error_date = self.last_error_message = None
        return _ok(True, "Webhook is already set" if unchanged else "Webhook was set")

    def _delete_webhook(self, params: dict[str, Any]) -> web.Response:
        if _flag(params.get("drop_pending_updates")):
            self._drop_pending()
        was_set = self.webhook is not None
        self.webhook = None
        self.last_error_date = self.last_error_message = None
        return _ok(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        webhook = self.webhook
        info: dict[str, Any] = {
            "url": webhook.url if webhook else "",
            "has_custom_certificate": bool(webhook and webhook.has_custom_certificate),
            "pending_update_count": self.pending_update_count,
        }
        if webhook is not None:
            if webhook.ip_address:
                info["ip_address"] = webhook.ip_address
            if self.last_error_date is not None:
                info["last_error_date"] = self.last_error_date
                info["last_error_message"] = self.last_error_message
            info["max_connections"] = webhook.max_connections
            if webhook.allowed_updates:
                info["allowed_updates"] = webhook.allowed_updates
        return info

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset", 0)
        limit = min(max(_int_param(params, "limit", 100), 1), 100)
        timeout = max(_int_param(params, "timeout", 0), 0)
        self._set_allowed_updates(params.get("allowed_updates"))
        if offset > 0:
            self._pending = [update for update in self._pending if update["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        if self._poll is not None:
            self._poll.conflict = (
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
            self._changes.notify()
        poll = _Poll()
        self._poll = poll
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                if poll.conflict is not None:
                    raise _ApiError(409, poll.conflict)
                if self.webhook is not None:
                    raise _ApiError(409, "Conflict: terminated by setWebhook request")
                if self._pending:
                    return _ok(self._pending[:limit])
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return _ok([])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changes.next()
        finally:
            if self._poll is poll:
                self._poll = None

    def _chat_id(self, params: Mapping[str, Any]) -> int | str:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(chat_id, bool) or not isinstance(chat_id, (int, str)):
            raise _ApiError(400, "Bad Request: chat not found")
        if isinstance(chat_id, str) and not chat_id.startswith("@"):
            raise _ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _chat_for(self, chat_id: int | str) -> dict[str, Any]:
        if isinstance(chat_id, str):
            for chat in self._chats.values():
                if chat.get("username", "").lower() == chat_id[1:].lower():
                    return chat
            if self.strict_chats:
                raise _ApiError(400, "Bad Request: chat not found")
            return {
                "id": -1000000000000 - zlib.crc32(chat_id.encode()),
                "title": chat_id[1:],
                "username": chat_id[1:],
                "type": "channel",
            }
        known = self._chats.get(chat_id)
        if known is not None:
            return known
        if self.strict_chats:
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        return {"id": chat_id, "type": "supergroup" if chat_id < -1000000000000 else "group", "title": "Group"}

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        chat = self._chat_for(chat_id)
        if chat["id"] in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        raw_text = params.get("text")
        text = "" if raw_text is None else str(raw_text)
        parse_mode = params.get("parse_mode") or None
        plain, entities = format_text(text, str(parse_mode) if parse_mode else None)
        if not plain:
            raise _ApiError(400, "Bad Request: message text is empty")
        if utf16_length(plain) > _MAX_TEXT_LENGTH:
            raise _ApiError(400, "Bad Request: message is too long")
        if not parse_mode and isinstance(params.get("entities"), list):
            entities = params["entities"]
        reply_to = self._reply_target(params, int(chat["id"]))
        message_id = self._next_message_id(int(chat["id"]))
        message: dict[str, Any] = {"message_id": message_id}
        if params.get("message_thread_id"):
            message["message_thread_id"] = params["message_thread_id"]
        if chat["type"] == "channel":
            message["sender_chat"] = chat
        else:
            message["from"] = dict(self.bot_user)
        message["chat"] = chat
        message["date"] = int(time.time())
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message["text"] = plain
        if entities:
            message["entities"] = entities
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._messages[(int(chat["id"]), message_id)] = message
        self._sent.append({**params, "chat_id": chat_id, "text": text, "message_id": message_id, "message": message})
        self._changes.notify()
        return message

    def _send_voice(self, params: dict[str, Any]) -> dict[str, Any]:
        """``sendVoice``: an uploaded OGG/Opus file becomes a ``voice`` message (what Telegram's own
        clients play as a voice note); MP3 and M4A become ``audio`` instead, as Telegram does."""
        return self._send_file_message(params, "voice")

    def _send_audio(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._send_file_message(params, "audio")

    def _send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        """``sendPhoto``: an uploaded PNG/JPEG/GIF/WebP becomes a ``photo`` (a list of sizes); other bytes
        fail as Telegram's image processing does; uploads over 10 MB are refused."""
        upload = self._upload(params, "photo")
        data: bytes = upload["data"]
        if len(data) > _MAX_PHOTO_BYTES:
            raise _ApiError(413, "Request Entity Too Large")
        if not data.startswith(_IMAGE_MAGIC):
            raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        stored = self.register_file(data, kind="photo", file_name=upload.get("filename"))
        width, height = _png_size(data)
        return self._file_message(params, "photo", [{"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                                      "width": width, "height": height, "file_size": len(data)}])

    def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        """``sendDocument``: any uploaded file, kept with its name; over 50 MB is refused."""
        upload = self._upload(params, "document")
        data: bytes = upload["data"]
        if len(data) > _MAX_DOCUMENT_BYTES:
            raise _ApiError(413, "Request Entity Too Large")
        name = upload.get("filename") or "file"
        stored = self.register_file(data, kind="document", file_name=name)
        mime = upload.get("content_type") or "application/octet-stream"
        return self._file_message(params, "document", {"file_name": name, "mime_type": mime, "file_id": stored.file_id,
                                                       "file_unique_id": stored.file_unique_id, "file_size": len(data)})

    def _upload(self, params: dict[str, Any], field_name: str) -> dict[str, Any]:
        upload = params.get(field_name)
        if not isinstance(upload, dict) or not upload.get("data"):
            if upload in (None, ""):
                raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return upload

    def _file_message(self, params: dict[str, Any], field_name: str, content: Any) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        chat = self._chat_for(chat_id)
        if chat["id"] in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        caption = str(params.get("caption") or "")
        if utf16_length(caption) > _MAX_CAPTION_LENGTH:
            raise _ApiError(400, "Bad Request: message caption is too long")
        message_id = self._next_message_id(int(chat["id"]))
        message: dict[str, Any] = {"message_id": message_id, "from": dict(self.bot_user), "chat": chat,
                                   "date": int(time.time()), field_name: content}
        if caption:
            message["caption"] = caption
        self._messages[(int(chat["id"]), message_id)] = message
        self._sent.append({**params, "chat_id": chat_id, "text": caption, "message_id": message_id,
                           "message": message, "method": f"send{field_name.capitalize()}"})
        self._changes.notify()
        return message

    def _send_file_message(self, params: dict[str, Any], field_name: str) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        chat = self._chat_for(chat_id)
        if chat["id"] in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        upload = params.get(field_name)
        if not isinstance(upload, dict) or not upload.get("data"):
            if upload in (None, ""):
                raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        data: bytes = upload["data"]
        caption = str(params.get("caption") or "")
        if utf16_length(caption) > _MAX_CAPTION_LENGTH:
            raise _ApiError(400, "Bad Request: message caption is too long")
        kind = "voice" if field_name == "voice" and data.startswith(b"OggS") else "audio"
        mime = "audio/ogg" if data.startswith(b"OggS") else "audio/mpeg"
        stored = self.register_file(data, kind="voice" if kind == "voice" else "document",
                               file_name=upload.get("filename"))
        message_id = self._next_message_id(int(chat["id"]))
        message: dict[str, Any] = {"message_id": message_id, "from": dict(self.bot_user), "chat": chat,
                                   "date": int(time.time())}
        message[kind] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "duration": 1,
                         "mime_type": mime, "file_size": len(data)}
        if caption:
            message["caption"] = caption
        self._messages[(int(chat["id"]), message_id)] = message
        self._sent.append({**params, "chat_id": chat_id, "text": caption, "message_id": message_id,
                           "message": message, "method": f"send{field_name.capitalize()}"})
        self._changes.notify()
        return message

    def _reply_target(self, params: Mapping[str, Any], chat_id: int) -> dict[str, Any] | None:
        reply = params.get("reply_parameters")
        allow_without = _flag(params.get("allow_sending_without_reply"))
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_without = allow_without or _flag(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, ""):
                other = reply["chat_id"]
                chat_id = int(self._chat_for(other)["id"]) if isinstance(other, (int, str)) else chat_id
        else:
            target = params.get("reply_to_message_id")
        if target in (None, "", 0):
            return None
        try:
            found = self._messages.get((chat_id, int(target)))
        except (TypeError, ValueError):
            raise _ApiError(400, "Bad Request: message to be replied not found") from None
        if found is None:
            if allow_without:
                return None
            raise _ApiError(400, "Bad Request: message to be replied not found")
        original = dict(found)
        original.pop("reply_to_message", None)
        return original

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        chat = self._chat_for(chat_id)
        if chat["id"] in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if params.get("action") not in CHAT_ACTIONS:
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        self._actions.append({**params, "chat_id": chat_id, "time": time.time()})
        return True

    def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file_id")
        if not file_id:
            raise _ApiError(400, "Bad Request: file_id is empty")
        stored = self._files.get(str(file_id))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > _MAX_DOWNLOAD_SIZE:
            raise _ApiError(400, "Bad Request: file is too big")
        return stored.as_file()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


async def _serve_forever(host: str, port: int, token: str) -> None:
    async with TelegramEmulator(token, host=host, port=port) as emulator:
        print(f"Telegram Bot API emulator on {emulator.base_url}{token}/<method>", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: serve the emulator until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.telegram", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456789:AAEmulatorTestTokenForBotline000000")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, args.token))


if __name__ == "__main__":
    main()
