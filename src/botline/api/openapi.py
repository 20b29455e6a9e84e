"""The OpenAPI 3.1 description at GET /openapi.json, generated from the route table.

Each handler carries a `@documented(...)` description (summary, who may call it, the pydantic model
its body is validated with, its answer); the generator walks `app.router.routes()`, turns aiohttp
path patterns into OpenAPI templates and lets pydantic write the schemas. A route without a
description is left out of the document, and tests/api/test_openapi.py fails on it.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import version
from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, RootModel
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from botline.domain.limits import BodyBounded

JSON = "application/json"
REF_TEMPLATE = "#/components/schemas/{model}"
PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
"""An aiohttp path variable, `{name}` or `{name:regex}`."""

routes = web.RouteTableDef()


class Access(StrEnum):
    """Who may call an operation."""

    KEY = "key"
    """Any API key of the account: `Authorization: Bearer <key>` or `?api-key=<key>`."""
    ADMIN = "admin"
    """An API key of an administrator account."""
    ACCESS_KEY = "accessKey"
    """Anyone holding the web-chat session's access key, which is in the path."""
    WEBHOOK = "webhook"
    """A provider: the HMAC token in the path, then the provider's own signature or secret."""
    PUBLIC = "public"


class MessageAnswer(BaseModel):
    """Every error answer, and the answer of operations that only confirm."""

    message: str


class JsonObject(RootModel[Annotated[dict[str, Any], BodyBounded("read by the handler, which keeps what it needs")]]):
    """Any JSON object (its fields are read by the handler itself)."""


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = JSON


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str
    access: Access
    body: type[BaseModel] | None
    body_required: bool
    answers: Mapping[int, Answer]
    query: Mapping[str, str]
    upstream: bool


HandlerT = TypeVar("HandlerT", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])
_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def documented(
    summary: str, *, access: Access = Access.KEY, body: type[BaseModel] | None = None,
    answer: type[BaseModel] | None = None, status: int = 200, media_type: str | None = JSON,
    answers: Mapping[int, Answer] | None = None, query: Mapping[str, str] | None = None, upstream: bool = False,
    body_required: bool = True,
) -> Callable[[HandlerT], HandlerT]:
    """Describes a handler for /openapi.json; place it under the route decorator.

    `body` is the model the handler validates its JSON body with; `answer` the model of its success
    answer (`status`, `media_type`); `answers` other documented answers; `query` the query parameters
    it reads (name: description); `upstream` that it calls the model's provider (502/504 possible).
    The handler's docstring, if any, becomes the description.
    """

    def attach(handler: HandlerT) -> HandlerT:
        success = Answer("No content.", media_type=None) if status == 204 else Answer("Success.", answer, media_type)
        _OPERATIONS[handler] = Operation(
            summary=summary, description=(handler.__doc__ or "").strip(), access=access, body=body,
            body_required=body_required,
            answers={status: success, **(answers or {})}, query=dict(query or {}), upstream=upstream,
        )
        return handler

    return attach


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    return _OPERATIONS.get(handler)


PATH_PARAMETERS = {
    "access_key": "The web-chat session's access key: the credential of the public chat API.",
    "account_id": "An account id.",
    "client_id": "The web chat client the integration belongs to.",
    "document_id": "A document id of the collection named before it in the path.",
    "file": "A file below the static folder.",
    "id": "The id of the resource named before it in the path.",
    "integration_type": "Telegram, Zapi, EvolutionApi, Kapso or Chatwoot.",
    "item_id": "A schedule, recurring task or batch item id.",
    "job_id": "A batch job id (of the workflow named before it).",
    "key_id": "An API key id.",
    "link": "The signed token of a shell file's public address.",
    "message_id": "An assistant message id (the messageId of a prompt's answer).",
    "media_id": "An answer file id (the `id` of an entry in a message's `media`).",
    "name": "The integration type: Telegram, Zapi, EvolutionApi, Kapso or Chatwoot.",
    "session_id": "A web-chat session id.",
    "token": "The webhook token that the integration's webhookUrl carries.",
}
"""Every path variable used by a route; a new one must be described here (a test checks)."""

_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.KEY: [{"apiKey": []}, {"apiKeyQuery": []}],
    Access.ADMIN: [{"adminKey": []}, {"apiKeyQuery": []}],
}
_SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key (or access token) of the account."},
    "adminKey": {"type": "http", "scheme": "bearer", "description": "An API key of an administrator account."},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api-key",
                    "description": "The same key as a query parameter, for clients that cannot set headers."},
}


def documented_routes(app: web.Application) -> Iterator[tuple[str, str, Operation | None]]:
    """(method, aiohttp path pattern, description or None) for every route; HEAD twins of GET are skipped."""
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        yield route.method, route.resource.canonical, operation_of(route.handler)


Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


def _models(operations: list[Operation]) -> set[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(MessageAnswer, "serialization")}
    for operation in operations:
        if operation.body is not None:
            wanted.add((operation.body, "validation"))
        wanted |= {(answer.model, "serialization") for answer in operation.answers.values() if answer.model}
    return wanted


def _parameters(pattern: str, operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for name in PARAMETER.findall(pattern):
        parameters.append({"name": to_camel(name), "in": "path", "required": True,
                           "description": PATH_PARAMETERS.get(name, ""),
                           "schema": {"type": "string"}})
    parameters += [{"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
                   for name, text in operation.query.items()]
    return parameters


def _answers(operation: Operation, refs: Refs) -> dict[str, Any]:
    error = Answer("Refused: the message says why.", MessageAnswer)
    answers: dict[str, Answer] = {str(status): answer for status, answer in operation.answers.items()}
    answers.setdefault("4XX", error)
    if operation.upstream:
        answers.setdefault("502", Answer("The model's provider failed after retries.", MessageAnswer))
        answers.setdefault("504", Answer("The model's provider did not answer in time.", MessageAnswer))
    answers.setdefault("503", Answer("The storage is unavailable right now.", MessageAnswer))
    rendered: dict[str, Any] = {}
    for status, answer in answers.items():
        rendered[status] = {"description": answer.description}
        if answer.media_type:
            schema = refs[(answer.model, "serialization")] if answer.model else {}
            rendered[status]["content"] = {answer.media_type: {"schema": schema}}
    return rendered


def _operation(pattern: str, operation: Operation, refs: Refs) -> dict[str, Any]:
    item: dict[str, Any] = {"summary": operation.summary, "security": _SECURITY.get(operation.access, []),
                            "parameters": _parameters(pattern, operation)}
    if operation.description:
        item["description"] = operation.description
    if operation.body is not None:
        schema = refs[(operation.body, "validation")]
        item["requestBody"] = {"required": operation.body_required, "content": {JSON: {"schema": schema}}}
    item["responses"] = _answers(operation, refs)
    return item


def describe(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes (undocumented routes are left out)."""
    found = [(method, pattern, operation) for method, pattern, operation in documented_routes(app) if operation]
    wanted = sorted(_models([operation for _, _, operation in found]), key=lambda item: (item[0].__name__, item[1]))
    refs, definitions = models_json_schema(wanted, ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for method, pattern, operation in found:
        template = PARAMETER.sub(lambda match: "{" + to_camel(match.group(1)) + "}", pattern)
        paths.setdefault(template, {})[method.lower()] = _operation(pattern, operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "botline", "version": version("botline"),
                 "description": "Errors are JSON {\"message\"}; /v1 errors also carry OpenAI's {\"error\"}."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": definitions.get("$defs", {}), "securitySchemes": _SECURITY_SCHEMES},
    }


_DOCUMENTS: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


@routes.get("/openapi.json")
@documented("This description of the HTTP API (OpenAPI 3.1).", access=Access.PUBLIC)
async def openapi_json(request: web.Request) -> web.Response:
    """Generated once per application from its routes and models."""
    document = _DOCUMENTS.get(request.app)
    if document is None:
        document = _DOCUMENTS[request.app] = orjson.dumps(describe(request.app))
    return web.Response(body=document, content_type=JSON)
