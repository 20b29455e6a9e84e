"""Request parsing and JSON responses shared by every route module."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from botline.domain.json_schema import UnsafeSchema
from botline.domain.limits import NAME_MAX

ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(Exception):
    """An error answer: `{"message": ...}` with `status` (raised anywhere below a route)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def client_address(request: web.Request, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """The caller's address: the peer, or, when the peer is a trusted proxy, the address that proxy
    received the request from (the last X-Forwarded-For entry, which the proxy appended itself).

    Only that one entry is believed: everything left of it was written by whoever connected to the
    proxy, so walking further would let a client choose its own address.
    """
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
    if not forwarded:
        return peer
    try:
        trusted = any(ip_address(peer) in network for network in trusted_proxies)
    except ValueError:  # a Unix socket peer has no IP address
        trusted = False
    return forwarded if trusted else peer


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found.")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def message_response(message: str, *, status: int = 200) -> web.Response:
    return json_response({"message": message}, status=status)


def validation_message(exc: ValidationError, at: str = "") -> str:
    """The first validation problem as one sentence naming the field, as the client wrote it
    (`parameters.systemInstruction`); `at` is where the validated object sits in the body."""
    error = exc.errors(include_url=False, include_input=False)[0]
    location = ".".join([part for part in (at,) if part] + [str(part) for part in error["loc"]]) or "body"
    detail = error["msg"].removeprefix("Value error, ")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, UnsafeSchema):  # names the place inside the schema: ...contentFormat.properties.x.pattern
        location, detail = ".".join(filter(None, (location, cause.where))), cause.reason
    return f"Invalid value for {location}: {detail}."


JSON_SEPARATORS = web.AppKey("json_separators", int)
"""server.max_json_separators, for `check_json_values`."""


def check_json_values(request: web.Request, body: bytes) -> None:
    """413 when a body holds more JSON values than `server.max_json_separators` allows, before it is parsed.

    Parsing runs on the event loop and orjson holds the GIL, so no thread helps; what costs is the
    number of values, not the bytes (20 MB of `[{},{},...]` took over a second, 20 MB in one string
    80 ms). Counting commas and opening brackets is linear and a few milliseconds for 20 MB. Commas
    inside strings count too: the limit is set far above what a real request holds.
    """
    limit = request.app.get(JSON_SEPARATORS)
    if limit is not None and body.count(b",") + body.count(b"{") + body.count(b"[") > limit:
        raise ApiError(413, f"The request body holds too many JSON values (more than {limit} commas and brackets).")


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 400 for an empty or malformed body, 415 for a non-JSON content type, 413 for
    one with too many values."""
    if request.content_type not in ("application/json", "application/octet-stream", "text/plain", ""):
        raise ApiError(415, "The request body must be JSON (Content-Type: application/json).")
    body = await request.read()
    if not body:
        raise ApiError(400, "The request body is empty; a JSON object was expected.")
    check_json_values(request, body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.") from exc


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """The JSON body validated as `model`; 400 naming the field otherwise."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return parse_model(model, data)


def parse_model(model: type[ModelT], data: Any, *, at: str = "") -> ModelT:
    """`data` validated as `model`; 400 naming the field (under `at`, its place in the body)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc, at)) from exc


def query_text(request: web.Request, name: str, default: str = "", *, max_length: int = NAME_MAX) -> str:
    """A query parameter (`default` when absent); 400 naming it when longer than `max_length`.

    Every route reads its query through this or `query_int`, so none searches or stores an unbounded value.
    """
    value = request.query.get(name, default)
    if len(value) > max_length:
        raise ApiError(400, f"Query parameter {name} must have at most {max_length} characters.")
    return value


def query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(400, f"Query parameter {name} must be an integer.") from exc
