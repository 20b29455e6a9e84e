"""Skills in a turn: the gateway's skills are listed in the system instructions, `read_skill` loads
their instructions (and instruction sources) into the next round's system instructions, and with
`hideToolsWithoutSkill` tools show only while a skill that allows them is active.

The active skills are those of the conversation's last successful `read_skill` call, so they last
as long as the session's transcript (web chat and channels keep tool calls there) with no state of
their own; a /v1 caller that sends no such call starts with none.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from botline.domain.gateways import Gateway
from botline.domain.skills import Skill
from botline.egress import Trust
from botline.gateway.caller import Caller
from botline.gateway.context import ChatMessage
from botline.gateway.draft import SKILLS
from botline.gateway.errors import SourceUnavailable
from botline.gateway.extensions import Contribution
from botline.gateway.remote import RemoteFetcher
from botline.gateway.tools import Tool, ToolFailure, ToolSpec, function_spec
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)

READ_SKILL = "read_skill"
LIST_OPEN, LIST_CLOSE = "<available_skills>", "</available_skills>"
LIST_INTRO = (
    "Skills you can load with the read_skill tool (pass the slugs of every skill you need; a new call "
    "replaces the loaded ones). A loaded skill's instructions appear in an <activated_skill> block."
)
READ_SKILL_DESCRIPTION = (
    "Loads skills by slug: their instructions are added to your system instructions from your next step on. "
    "Calling it again replaces the loaded skills with the ones given."
)


def skills_list(skills: Sequence[Skill]) -> str:
    lines = [LIST_OPEN, LIST_INTRO]
    lines += [f"- {skill.slug}: {skill.description}" if skill.description else f"- {skill.slug}" for skill in skills]
    lines.append(LIST_CLOSE)
    return "\n".join(lines)


def requested_slugs(arguments: Any) -> list[str] | None:
    """The slugs of a read_skill call, or None when the arguments are not `{"skills": [str, ...]}`."""
    slugs = arguments.get("skills") if isinstance(arguments, dict) else None
    if not isinstance(slugs, list) or not all(isinstance(slug, str) for slug in slugs):
        return None
    return slugs


def _read_skill_slugs(call: Any) -> list[str]:
    """The slugs a stored tool call asked read_skill for ([] for any other call or bad arguments)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or function.get("name") != READ_SKILL:
        return []
    try:
        return requested_slugs(orjson.loads(function.get("arguments") or "{}")) or []
    except orjson.JSONDecodeError:
        return []


class ActiveSkills:
    """The skills loaded in one turn, and what they change in each round (a RoundShaper)."""

    def __init__(self, skills: Sequence[Skill], gateway: Gateway, *, fetcher: RemoteFetcher, trust: Trust,
                 timeout: float) -> None:
        self.available = {skill.slug: skill for skill in skills}
        self.active: list[Skill] = []
        params = gateway.parameters
        self._hide = params.hide_tools_without_skill
        self._always = frozenset([READ_SKILL, *params.always_visible_tools])
        self._fetcher = fetcher
        self._trust = trust
        self._timeout = timeout

    def resolve(self, slugs: Sequence[str]) -> list[Skill]:
        return [self.available[slug] for slug in dict.fromkeys(slugs) if slug in self.available]

    def begin(self, conversation: Sequence[ChatMessage]) -> None:
        for message in conversation:
            if message.get("role") != "assistant":
                continue
            for call in message.get("tool_calls") or ():
                loaded = self.resolve(_read_skill_slugs(call))
                if loaded:
                    self.active = loaded

    def offers(self, tool_name: str) -> bool:
        if not self._hide or tool_name in self._always:
            return True
        return any(tool_name in skill.options.allowed_tools_names for skill in self.active)

    async def system_blocks(self) -> list[str]:
        return [await self._block(skill) for skill in self.active]

    def forget(self) -> None:
        self.available, self.active = {}, []

    async def _block(self, skill: Skill) -> str:
        parts = [f'<activated_skill slug="{skill.slug}">', skill.instructions]
        for source in skill.options.instruction_sources:
            try:
                body = await self._fetcher.cached(source.url, trust=self._trust, headers=source.headers,
                                                  ttl=source.cache_duration, timeout=self._timeout)
            except SourceUnavailable:
                log.warning("instruction source %s of skill %s skipped", source.name, skill.slug)
                continue
            parts.append(body.decode("utf-8", errors="replace"))
        parts.append("</activated_skill>")
        return "\n".join(parts)


class ReadSkill(Tool):
    name = READ_SKILL

    def __init__(self, active: ActiveSkills) -> None:
        self._active = active

    def spec(self) -> ToolSpec:
        slugs = {"type": "array", "items": {"type": "string", "enum": list(self._active.available)},
                 "description": "The slugs of the skills to load."}
        return function_spec(self.name, READ_SKILL_DESCRIPTION,
                             {"type": "object", "properties": {"skills": slugs}, "required": ["skills"]})

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        slugs = requested_slugs(arguments)
        known = ", ".join(self._active.available)
        if slugs is None:
            raise ToolFailure(f'read_skill takes {{"skills": [slugs]}}; the skills are: {known}.')
        loaded = self._active.resolve(slugs)
        if not loaded:
            raise ToolFailure(f"No such skill. The skills are: {known}.")
        self._active.active = loaded
        unknown = [slug for slug in slugs if slug not in self._active.available]
        names = ", ".join(skill.slug for skill in loaded)
        text = f"Loaded: {names}. Their instructions are in your system instructions."
        return text + (f" Unknown (ignored): {', '.join(unknown)}." if unknown else "")


class SkillsExtension:
    """Adds the skills list, `read_skill` and the visibility rules to the turns of gateways with skills
    (or with hideToolsWithoutSkill)."""

    def __init__(self, store: Store, fetcher: RemoteFetcher, *, trust_of: Callable[[str], Awaitable[Trust]],
                 timeout: float) -> None:
        self._store = store
        self._fetcher = fetcher
        self._trust_of = trust_of
        self._timeout = timeout

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        params = gateway.parameters
        if not params.skills and not params.hide_tools_without_skill:
            return Contribution()
        try:
            skills = await self._store.skills.get_many(gateway.account_id, params.skills)
        except StoreError as exc:  # the turn goes on without skills rather than failing
            log.warning("skills not offered: %s", exc)
            skills = []
        active = ActiveSkills(skills, gateway, fetcher=self._fetcher, trust=await self._trust_of(gateway.account_id),
                              timeout=self._timeout)
        if not skills:
            return Contribution(shapers=[active], group=SKILLS)
        return Contribution(instructions=[skills_list(skills)], tools=[ReadSkill(active)], shapers=[active],
                            group=SKILLS)
