"""Size limits of everything the HTTP API accepts, as field types every request model is built from.

Each string has a maximum length and each list or mapping a maximum size, so a hostile body is
refused by validation (a 400 naming the field) before anything reads, stores or forwards it. A new
model uses these types; tests/domain/test_limits.py walks every request model and fails on a field
without a bound. docs/api.md has the table of classes and fields.

Free-form JSON (a JSON Schema, a tool definition, `additionalSettings`) has a byte budget instead
(`JsonBudget`). A few values are deliberately bounded only by `server.max_body_bytes` (inline
uploads, OpenAI messages, provider webhooks): they say so with `BodyBounded`, and the test keeps the
list of them closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, create_model, model_validator
from pydantic_core import core_schema

NAME_MAX = 256
"""Names, labels, ids, slugs, model names, tags, time zones, enum-like settings, query parameters."""
EMAIL_MAX = 320
URL_MAX = 2_048
SECRET_MAX = 4_096
"""API keys, bot tokens, webhook secrets."""
HEADER_VALUE_MAX = 8_192
"""aiohttp itself refuses a longer header line (8,190 bytes)."""
TEXT_MAX = 4_096
"""One paragraph: descriptions, placeholders, suggestion prompts, metadata values."""
LONG_TEXT_MAX = 64 * 1024
"""Templates, prefills, tool descriptions, a session's extraContext."""
DOCUMENT_MAX = 256 * 1024
"""System instructions, worker scripts, a chat page's custom scripts and styles, an inline logo."""
ITEMS_MAX = 128
"""Any list: functions, sources, skills, flags, buttons, origins, e-mails, tools."""
MAP_MAX = 64
"""Any mapping: headers, metadata, extra OpenAI parameters."""
JSON_MAX_BYTES = 64 * 1024
"""A free-form JSON value, measured as compact JSON."""
MESSAGES_MAX = 4_096
"""Messages in one /v1/chat/completions request."""

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)

Name = Annotated[str, Field(max_length=NAME_MAX)]
Email = Annotated[str, Field(max_length=EMAIL_MAX)]
Url = Annotated[str, Field(max_length=URL_MAX)]
Secret = Annotated[str, Field(max_length=SECRET_MAX)]
Text = Annotated[str, Field(max_length=TEXT_MAX)]
LongText = Annotated[str, Field(max_length=LONG_TEXT_MAX)]
Document = Annotated[str, Field(max_length=DOCUMENT_MAX)]
ImageUrl = Annotated[str, Field(max_length=DOCUMENT_MAX)]
"""An http(s) URL, or a data:image URL that carries the image itself."""
Items = Annotated[list[T], Field(max_length=ITEMS_MAX)]
Headers = Annotated[dict[Name, Annotated[str, Field(max_length=HEADER_VALUE_MAX)]], Field(max_length=MAP_MAX)]
StringMap = Annotated[dict[Name, Text], Field(max_length=MAP_MAX)]


@dataclass(frozen=True)
class JsonBudget:
    """The value, written as compact JSON, is at most `max_bytes` long (checked after validation)."""

    max_bytes: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: Any) -> Any:
        size = len(orjson.dumps(value, default=str))
        if size > self.max_bytes:
            raise ValueError(f"is {size} bytes of JSON; the limit is {self.max_bytes} bytes")
        return value


@dataclass(frozen=True)
class BodyBounded:
    """No limit of its own: bounded by `server.max_body_bytes`, and `why` says who caps what is kept."""

    why: str


@dataclass(frozen=True)
class PatchOf:
    """A partial object merged into a stored one and validated as `models` (whose limits then apply)."""

    models: tuple[type[BaseModel], ...]


def partial(model: type[ModelT]) -> type[ModelT]:
    """`model` with every field optional: validates a patch with the types and limits of the fields it
    sets, before anything walks it to merge it (a merge loop over a million-item list would run first)."""
    fields: dict[str, Any] = {
        name: (Optional[info.rebuild_annotation()], Field(default=None, alias=info.alias))  # noqa: UP045
        for name, info in model.model_fields.items()
    }
    return cast(type[ModelT], create_model(f"Partial{model.__name__}", __base__=model, **fields))


JsonObject = Annotated[dict[str, Any], Field(max_length=MAP_MAX), JsonBudget(JSON_MAX_BYTES)]
JsonValue = Annotated[Any, JsonBudget(JSON_MAX_BYTES)]
Patch = Annotated[dict[str, Any], Field(max_length=ITEMS_MAX)]
"""Use as `Annotated[Patch, PatchOf((Model,))]`."""


class OpenModel(BaseModel):
    """A model that keeps unknown fields (passed on, e.g. to the upstream): at most MAP_MAX of them, each
    within the JSON budget, so extras are bounded like declared fields."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _few_extras(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {name for field, info in cls.model_fields.items() for name in (field, info.alias) if name}
            extras = sum(1 for key in data if key not in known)
            if extras > MAP_MAX:
                raise ValueError(f"at most {MAP_MAX} fields besides the documented ones are accepted (got {extras})")
        return data
