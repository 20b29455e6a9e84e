"""MCP sources in a turn: each source's tools are offered to the model under a namespaced name
(`{source}__{tool}`, so two servers' tools cannot collide) and called with `params._meta` carrying
the `_aiv_*` fields. A source that is down or slow is left out of the turn, or fails only that call.
What a result becomes (text, images for the model and the person): `mcp_results`."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mcp_types as types
import orjson

from botline.domain.gateways import Gateway, RemoteResource
from botline.domain.limits import JSON_MAX_BYTES, LONG_TEXT_MAX
from botline.egress import Trust
from botline.gateway.caller import Caller
from botline.gateway.extensions import Contribution
from botline.gateway.multimodal import ModelInputs
from botline.gateway.tools import MEDIA_AUDIENCES, Tool, ToolFailure, ToolReply, ToolSpec, function_spec
from botline.tools.mcp_pool import McpPool, McpUnavailable
from botline.tools.mcp_results import ResultRules, read_result
from botline.tools.nonce import RequestNonces

log = logging.getLogger(__name__)

TOOL_NAME_MAX = 64
"""The longest function name the OpenAI API accepts."""
NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
SEPARATOR = "__"
RESERVED_META = "_aiv"
DEFAULT_CACHE_SECONDS = 600
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def tool_name(source: str, tool: str) -> str:
    """`{source}__{tool}` with anything but letters, digits, '_' and '-' replaced by '_', cut at 64."""
    return NOT_NAME.sub("_", f"{source}{SEPARATOR}{tool}")[:TOOL_NAME_MAX]


def call_meta(caller: Caller, nonce: str | None, moment: datetime) -> dict[str, Any]:
    """`params._meta` of a tools/call: the session's metadata (never a reserved `_aiv` key) and ours."""
    meta: dict[str, Any] = {k: v for k, v in caller.metadata.items() if not k.startswith(RESERVED_META)}
    meta.update({
        "_aiv_nonce": nonce, "_aiv_external_user_id": caller.external_user_id,
        "_aiv_call_source": caller.call_source.value, "_aiv_conversation_token": caller.conversation_token,
        "_aiv_moment": moment.isoformat(),
    })
    return meta


@dataclass(frozen=True)
class McpLimits:
    text_chars: int
    """tools.tool_output_max_chars"""
    image_bytes: int
    """tools.mcp_image_max_bytes"""


class McpTool(Tool):
    def __init__(self, source: RemoteResource, listed: types.Tool, *, pool: McpPool, trust: Trust,
                 nonce: Callable[[], Awaitable[str | None]], limits: McpLimits, model_sees_images: bool) -> None:
        self.name = tool_name(source.name, listed.name)
        self._source = source
        self._remote_name = listed.name
        self._spec = function_spec(self.name, (listed.description or listed.title or listed.name)[:LONG_TEXT_MAX],
                                   listed.input_schema or EMPTY_SCHEMA)
        self._pool = pool
        self._trust = trust
        self._nonce = nonce
        self._limits = limits
        self._model_sees_images = model_sees_images

    def spec(self) -> ToolSpec:
        return self._spec

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str | ToolReply:
        meta = call_meta(caller, await self._nonce(), datetime.now(UTC))
        try:
            result = await self._pool.call(self._source.url, self._source.headers, self._trust, self._remote_name,
                                           arguments, meta)
        except McpUnavailable as exc:
            log.warning("MCP tool %s of source %s failed: %s", self._remote_name, self._source.name, exc)
            raise ToolFailure(f"The tool {self.name} is unavailable right now ({exc}). Tell the user.") from None
        return read_result(result, self.name, ResultRules(
            text_limit=self._limits.text_chars, image_max_bytes=self._limits.image_bytes,
            model_sees_images=self._model_sees_images, person_sees_media=caller.call_source in MEDIA_AUDIENCES))


def _fits(listed: types.Tool) -> bool:
    """A listed tool a hostile server made too large to offer (its schema is sent with every round)."""
    return len(orjson.dumps(listed.input_schema)) <= JSON_MAX_BYTES and len(listed.name) <= TOOL_NAME_MAX * 4


class McpExtension:
    def __init__(self, pool: McpPool, nonces: RequestNonces, *, trust_of: Callable[[str], Awaitable[Trust]],
                 limits: McpLimits) -> None:
        self._pool = pool
        self._nonces = nonces
        self._trust_of = trust_of
        self._limits = limits

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        sources = gateway.parameters.mcp_sources
        if not sources:
            return Contribution()
        return Contribution(tools=await self.tools(gateway, sources))

    async def tools(self, gateway: Gateway, sources: Sequence[RemoteResource]) -> list[Tool]:
        """The tools of `sources` for a turn of `gateway` (a source that cannot be listed is logged and left out)."""
        account_id = gateway.account_id
        trust = await self._trust_of(account_id)
        sees_images = ModelInputs.of(gateway.parameters).images

        async def nonce() -> str | None:
            return await self._nonces.of(account_id)

        tools: list[Tool] = []
        for source in sources:
            ttl = source.cache_duration if source.cache_duration > 0 else DEFAULT_CACHE_SECONDS
            try:
                listed = await self._pool.tools(source.url, source.headers, trust, ttl=ttl)
            except McpUnavailable as exc:
                log.warning("MCP source %s left out of this turn: %s", source.name, exc)
                continue
            tools += [McpTool(source, item, pool=self._pool, trust=trust, nonce=nonce, limits=self._limits,
                              model_sees_images=sees_images) for item in listed if _fits(item)]
        return tools
