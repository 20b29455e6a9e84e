"""Every string, list and mapping the HTTP API accepts has a bound: a walk over every request model
(the body model of every documented route, and what those reach) fails on a field without one, so a
new model or field without limits fails here before it ships."""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from annotated_types import MaxLen
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

import botline.api
from botline.api.openapi import documented_routes
from botline.app import build_app
from botline.domain.limits import (
    JSON_MAX_BYTES,
    MAP_MAX,
    BodyBounded,
    Items,
    JsonBudget,
    JsonObject,
    Name,
    OpenModel,
    PatchOf,
)
from tests.support.server import make_settings

CONTAINERS = (list, set, frozenset, tuple, dict)
BODY_BOUNDED = {"ChatCompletionBody.messages[]", "PromptMessage.content[]", "JsonObject.root"}
"""Values bounded only by server.max_body_bytes, each with its reason (BodyBounded.why). Adding one is a
decision for review: say in docs/api.md who caps what is kept."""
QUERY_READERS = {"http.py", "auth.py"}
"""auth.py reads ?api-key= (only hashed; aiohttp caps the request line at 8 KB)."""


def request_models() -> list[type[BaseModel]]:
    app = build_app(make_settings("sqlite:///unused.db"))
    return sorted({op.body for _, _, op in documented_routes(app) if op and op.body}, key=lambda m: m.__name__)


def _metadata(items: Any) -> list[Any]:
    found: list[Any] = []
    for item in items:
        found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return found


@dataclass
class Walk:
    """Walks field types; `problems` names every unbounded one, `body_bounded` every BodyBounded one."""

    problems: set[str] = field(default_factory=set)
    body_bounded: set[str] = field(default_factory=set)
    seen: set[type[BaseModel]] = field(default_factory=set)

    def model(self, model: type[BaseModel]) -> None:
        if model in self.seen:
            return
        self.seen.add(model)
        if model.model_config.get("extra") == "allow" and not issubclass(model, OpenModel):
            self.problems.add(f"{model.__name__}: keeps unknown fields without bounds (extend OpenModel)")
        for name, info in model.model_fields.items():
            self.node(info.annotation, f"{model.__name__}.{name}", list(info.metadata), covered=False)

    def node(self, annotation: Any, where: str, metadata: list[Any], *, covered: bool) -> None:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            self.node(base, where, [*metadata, *_metadata(extra)], covered=covered)
            return
        if any(isinstance(m, BodyBounded) for m in metadata):
            self.body_bounded.add(where)
            return
        covered = covered or any(isinstance(m, JsonBudget) for m in metadata)
        bounded = covered or any(isinstance(m, MaxLen) for m in metadata)
        patch = next((m for m in metadata if isinstance(m, PatchOf)), None)
        if origin in (Union, types.UnionType):
            for arm in get_args(annotation):
                if arm is not type(None):
                    self.node(arm, where, metadata, covered=covered)
        elif patch is not None:
            if not bounded:
                self.problems.add(f"{where}: a patch without a maximum number of keys")
            for model in patch.models:
                self.model(model)
        elif annotation is Any or annotation is object:
            if not covered:
                self.problems.add(f"{where}: free-form JSON without a JsonBudget")
        elif annotation in (str, bytes):
            if not bounded:
                self.problems.add(f"{where}: a string without max_length")
        elif annotation in CONTAINERS or origin in CONTAINERS:
            if not bounded:
                self.problems.add(f"{where}: a {(origin or annotation).__name__} without a maximum size")
            for arg in get_args(annotation):
                if arg is not Ellipsis:
                    self.node(arg, f"{where}[]", [], covered=covered)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            self.model(annotation)


def walk(*models: type[BaseModel]) -> Walk:
    walker = Walk()
    for model in models:
        walker.model(model)
    return walker


def test_every_field_of_every_request_model_is_bounded() -> None:
    walker = walk(*request_models())
    unexcused = sorted(walker.problems)
    assert not unexcused, unexcused
    assert walker.body_bounded == BODY_BOUNDED


def test_the_walk_reaches_the_nested_and_patched_models() -> None:
    reached = {model.__name__ for model in walk(*request_models()).seen}
    assert {"GatewayParameters", "ProtocolFunction", "RemoteResource", "ClientParameters", "SuggestionButton",
            "TelegramIntegration", "EvolutionIntegration", "Notifications", "ChatCompletionBody"} <= reached


class Unbounded(BaseModel):
    title: str
    tags: list[Annotated[str, Field(max_length=5)]]
    labels: Items[str]
    settings: dict[str, Any] = Field(max_length=3)
    blob: JsonObject


def test_the_walk_names_each_missing_bound() -> None:
    assert walk(Unbounded).problems == {
        "Unbounded.title: a string without max_length",
        "Unbounded.tags: a list without a maximum size",
        "Unbounded.labels[]: a string without max_length",
        "Unbounded.settings[]: a string without max_length",
        "Unbounded.settings[]: free-form JSON without a JsonBudget",
    }


class Extras(OpenModel):
    name: Name = ""


def test_unknown_fields_are_bounded_like_declared_ones() -> None:
    assert Extras.model_validate({"temperature": 0.2}).model_extra == {"temperature": 0.2}
    with pytest.raises(ValidationError, match="temperature"):
        Extras.model_validate({"temperature": "x" * JSON_MAX_BYTES})
    with pytest.raises(ValidationError, match=f"at most {MAP_MAX} fields"):
        Extras.model_validate({f"k{i}": 1 for i in range(MAP_MAX + 1)})
    assert Extras.model_validate({f"k{i}": 1 for i in range(MAP_MAX)}, strict=False).model_extra


def test_a_json_budget_counts_compact_json_bytes() -> None:
    class Blob(BaseModel):
        value: JsonObject

    just_fits = {"k": "x" * (JSON_MAX_BYTES - len('{"k":""}'))}
    assert Blob(value=just_fits).value == just_fits
    with pytest.raises(ValidationError, match=f"the limit is {JSON_MAX_BYTES} bytes"):
        Blob(value={"k": "x" * JSON_MAX_BYTES})


def _reads_query(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Attribute) and node.attr == "query" and isinstance(node.value, ast.Name)
               and node.value.id == "request" for node in ast.walk(tree))


def test_routes_read_query_parameters_only_through_the_capped_helpers() -> None:
    api = Path(botline.api.__file__).parent
    direct = {path.name for path in api.glob("*.py") if _reads_query(path)}
    assert direct <= QUERY_READERS, f"use api.http.query_text in {sorted(direct - QUERY_READERS)}"

