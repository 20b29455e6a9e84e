"""Skills: instruction packs a gateway's model loads on demand with `read_skill` (seed section Skills)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.gateways import RemoteResource as InstructionSource
from botline.domain.gateways import StrictCamelModel
from botline.domain.limits import Document, Items, Name, Text
from botline.domain.secrets import MASK, SecretNeeded, same_destination

SLUG_MAX = 64
SLUG = re.compile(r"[A-Za-z0-9_.-]+")
SLUG_RULE = f"must be 1 to {SLUG_MAX} characters, each a letter, a digit, '_', '.' or '-'"

__all__ = ["SLUG_RULE", "InstructionSource", "Skill", "SkillBody", "SkillOptions"]


def check_slug(value: str) -> str:
    """`value` when it follows SLUG_RULE (bounded by NAME_MAX before the linear regex runs)."""
    if not 1 <= len(value) <= SLUG_MAX or not SLUG.fullmatch(value):
        raise ValueError(SLUG_RULE)
    return value


class SkillOptions(StrictCamelModel):
    instruction_sources: Items[InstructionSource] = Field(default_factory=list)
    """Remote texts loaded with the skill, each cached for its cacheDuration."""
    allowed_tools_names: Items[Name] = Field(default_factory=list)
    """Tools a gateway with hideToolsWithoutSkill offers only while this skill is active."""


class SkillBody(StrictCamelModel):
    """What a client sends to create or replace a skill (and one line of a JSONL import)."""

    slug: Name
    description: Text | None = None
    instructions: Document
    options: SkillOptions = Field(default_factory=SkillOptions)

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, value: str) -> str:
        return check_slug(value)


class Skill(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    slug: str
    description: str | None = None
    instructions: str
    options: SkillOptions = Field(default_factory=SkillOptions)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def of(cls, account_id: str, body: SkillBody, **kwargs: Any) -> Skill:
        return cls(account_id=account_id, slug=body.slug, description=body.description,
                   instructions=body.instructions, options=body.options, **kwargs)


def masked_view(skill: Skill) -> dict[str, Any]:
    """The skill as answered (GET, export): every instruction source header value masked."""
    data = skill.wire(exclude={"account_id"})
    for source in data["options"]["instructionSources"]:
        source["headers"] = dict.fromkeys(source["headers"], MASK)
    return data


def keep_masked_headers(given: dict[str, Any], stored: Skill | None) -> dict[str, Any]:
    """A body (or import line) that sends masked header values back keeps the stored ones: matched by
    source name while its URL is unchanged, else SecretNeeded (domain/secrets.py). A masked value with
    nothing stored behind it is dropped."""
    options = given.get("options")
    if not isinstance(options, dict) or not isinstance(options.get("instructionSources"), list):
        return given
    before = {} if stored is None else {source.name: source for source in stored.options.instruction_sources}
    restored: list[Any] = []
    for index, item in enumerate(options["instructionSources"]):
        if isinstance(item, dict) and isinstance(item.get("headers"), dict):
            old = before.get(str(item.get("name")))
            previous = old.headers if old is not None else {}
            headers: dict[str, Any] = {}
            for key, value in item["headers"].items():
                if value != MASK:
                    headers[key] = value
                elif old is not None and key in previous:
                    if not same_destination(old.url, item.get("url")):
                        raise SecretNeeded(f"options.instructionSources.{index}.headers.{key}", "its url")
                    headers[key] = previous[key]
            item = {**item, "headers": headers}
        restored.append(item)
    return {**given, "options": {**options, "instructionSources": restored}}
