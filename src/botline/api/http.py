"""Request parsing and JSON responses shared by every route module."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from botline.domain.json_schema import UnsafeSchema

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


def validation_message(exc: ValidationError) -> str:
    """The first validation problem as one sentence naming the field."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "body"
    detail = error["msg"].removeprefix("Value error, ")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, UnsafeSchema):  # names the place inside the schema: ...contentFormat.properties.x.pattern
        location, detail = ".".join(filter(None, (location, cause.where))), cause.reason
    return f"Invalid value for {location}: {detail}."


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 400 for an empty or malformed body, 415 for a non-JSON content type."""
    if request.content_type not in ("application/json", "application/octet-stream", "text/plain", ""):
        raise ApiError(415, "The request body must be JSON (Content-Type: application/json).")
    body = await request.read()
    if not body:
        raise ApiError(400, "The request body is empty; a JSON object was expected.")
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


def parse_model(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc)) from exc


def query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(400, f"Query parameter {name} must be an integer.") from exc
