"""AI gateways: an upstream OpenAI-compatible model plus how botline shapes every call to it.

Field names and enums follow the AIVAX contract (seed section "AI Gateways"). Every field is
accepted, stored and returned; docs/gateways.md lists which ones inference applies today.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from botline.domain import json_schema
from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import Document, Headers, Items, JsonObject, JsonValue, LongText, Name, Secret, Text, Url
from botline.domain.secrets import MASK, SecretNeeded, same_destination


class StrictCamelModel(CamelModel):
    """Rejects unknown keys, so a typo in a parameter is a clear 400 instead of a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class GatewayFlag(StrEnum):
    NO_SYSTEM_INSTRUCT = "NoSystemInstruct"
    NO_TEMPERATURE = "NoTemperature"
    THINKING_PROCESS = "ThinkingProcess"
    NO_ASSISTANT_PREFILLING = "NoAssistantPrefilling"
    RETURN_REASONING_TOKENS = "ReturnReasoningTokens"
    DISABLE_MULTI_MODAL_INPUT = "DisableMultiModalInput"
    DIFFUSING_STREAM = "DiffusingStream"
    OPEN_AI_STRICT_JSON = "OpenAiStrictJson"
    STRUCTURED_OUTPUT_SUPPORT = "StructuredOutputSupport"
    PRESERVE_THINKING_TOKENS = "PreserveThinkingTokens"
    NO_STOP_PARAMETER = "NoStopParameter"
    NO_REASONING_EFFORT = "NoReasoningEffort"
    REWRITE_TOOL_CALLS_AS_USER_MESSAGES = "RewriteToolCallsAsUserMessages"
    DISABLE_REASONING_SUMMARY = "DisableReasoningSummary"
    DISABLE_REASONING_DETAILS = "DisableReasoningDetails"
    INCLUDE_STORED_REASONING = "IncludeStoredReasoning"
    STRICT_USER_ASSISTANT_TURNS = "StrictUserAssistantTurns"
    WORKER_FAIL_CLOSED = "WorkerFailClosed"
    """botline's addition: a worker that fails or times out stops the event, as a refusal does (docs/tools.md)."""


class ContextOverflowAction(StrEnum):
    THROW = "Throw"
    TRUNCATE = "Truncate"


class QueryStrategy(StrEnum):
    PLAIN = "Plain"
    CONCATENATE = "Concatenate"
    FULL_REWRITE = "FullRewrite"
    USER_REWRITE = "UserRewrite"
    QUERY_FUNCTION = "QueryFunction"


class MultimodalFeature(StrEnum):
    IMAGE = "Image"
    AUDIO = "Audio"
    VIDEO = "Video"
    FILE = "File"
    OTHER_FILES = "OtherFiles"
    ALL = "All"


class SentinelFunction(StrEnum):
    WEB_SEARCH = "WebSearch"
    CODE = "Code"
    OPEN_URL = "OpenUrl"
    REMEMBER = "Remember"
    IMAGE_GENERATION = "ImageGeneration"
    X_POSTS_SEARCH = "XPostsSearch"
    GENERATE_DOCUMENT = "GenerateDocument"
    GENERATE_WEB_PAGE = "GenerateWebPage"
    ADVANCED_WEB_USAGE = "AdvancedWebUsage"
    REQUEST = "Request"
    CALENDAR = "Calendar"
    HANDOFF = "Handoff"
    """botline's addition: the handoff_to_human tool (docs/handoff.md)."""


class ToolExclusionMode(StrEnum):
    WHITE_LIST = "WhiteList"
    BLACK_LIST = "BlackList"


PROGRAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
SHELL_PROGRAM = "bash"


class BashOptions(StrictCamelModel):
    """The bash tool (docs/shell.md): whether files persist, and which installed programs exist in the sandbox
    (WhiteList: only `toolList`, or the documented default list when empty; BlackList: all but `toolList`)."""

    allow_data_persistence: bool = False
    tool_list: Items[Annotated[str, Field(max_length=64)]] = Field(default_factory=list)
    tool_exclusion_mode: ToolExclusionMode = ToolExclusionMode.WHITE_LIST

    @field_validator("tool_list")
    @classmethod
    def _program_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not PROGRAM_NAME.match(name):
                raise ValueError(f"{name!r} is not a program name (letters, digits, . _ + -; no paths)")
        return value

    @model_validator(mode="after")
    def _shell_stays(self) -> BashOptions:
        if self.tool_exclusion_mode is ToolExclusionMode.BLACK_LIST and SHELL_PROGRAM in self.tool_list:
            raise ValueError("bash itself cannot be on the BlackList: the tool is a bash shell")
        return self


class QueryStrategyParameters(StrictCamelModel):
    rewrite_context_size: int = 0
    concatenate_context_size: int = 0


PROTOCOL_FUNCTION_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_$]{2,}$")
CALLBACK_URL = re.compile(r"^(https?://.+|aivax://query-collection\?.*)$")
"""An http(s) URL, or the specialist function that searches a collection (served by knowledge/tools.py)."""
WORKER_URL = re.compile(r"^https?://\S+$")
MAX_FUNCTION_NAME_LENGTH = 64
"""The longest function name the OpenAI API accepts."""
MAX_URL_LENGTH = 2048
"""What browsers and most servers accept; also caps the work of CALLBACK_URL."""


class ProtocolFunction(StrictCamelModel):
    """A tool the model may call; botline POSTs the arguments to callbackUrl."""

    name: str = Field(max_length=MAX_FUNCTION_NAME_LENGTH)
    description: LongText = Field(min_length=10)
    headers: Headers = Field(default_factory=dict)
    callback_url: Url
    content_format: JsonObject

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not PROTOCOL_FUNCTION_NAME.match(value):
            raise ValueError("must be a JavaScript identifier of at least 3 characters")
        return value

    @field_validator("callback_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not CALLBACK_URL.match(value):
            raise ValueError("must be an absolute http(s) URL or aivax://query-collection?collection-id=...")
        return value

    @field_validator("content_format")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A broken schema is refused when saved, not discovered when the model calls the tool."""
        json_schema.check_schema(value)
        return value


class RemoteResource(StrictCamelModel):
    """A URL whose content is fetched and cached (instruction sources, MCP sources)."""

    name: Name = Field(min_length=3)
    description: Text | None = None
    url: Url
    headers: Headers = Field(default_factory=dict)
    cache_duration: int = 600

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not CALLBACK_URL.match(value):
            raise ValueError("must be an absolute http(s) URL or aivax://query-collection?collection-id=...")
        return value


class SentinelOptions(StrictCamelModel):
    enabled_functions: Items[SentinelFunction] = Field(default_factory=list)


class BuiltinFunctionsOptions(StrictCamelModel):
    web_search_mode: Name = "Full"
    web_search_max_results: int = 5
    image_generation_max_results: int = 1
    image_generation_quality: Name = "Low"
    image_generation_allow_mature_content: bool = False
    image_generation_allow_reference_usage: bool = False
    image_generation_model_name: Name | None = None
    include_all_memory_context: bool = False


class ModerationParameters(StrictCamelModel):
    violence_threshold: int = 0
    sexual_explicit_threshold: int = 0
    political_threshold: int = 0
    dangerous_content_threshold: int = 0
    jailbreak_threshold: int = 0


class ModelRoutingParameters(StrictCamelModel):
    low_complexity_model_name: Name = Field(min_length=1)
    low_complexity_model_reasoning_effort: Name | None = None
    medium_complexity_model_name: Name = Field(min_length=1)
    medium_complexity_model_reasoning_effort: Name | None = None
    high_complexity_model_name: Name = Field(min_length=1)
    high_complexity_model_reasoning_effort: Name | None = None


class GatewayParameters(StrictCamelModel):
    """Everything the seed's gateway `parameters` object holds."""

    base_address: Url | None = Field(default=None, min_length=1)
    """Required unless `llm_connection_id` names a connection (then it must be absent)."""
    api_key: Secret | None = None
    llm_connection_id: Name | None = None
    """An LLM connection of the account (/api/v1/ai/llm) whose endpoint and credential this gateway
    uses instead of `baseAddress`/`apiKey`: rotating the connection's key moves every gateway using it."""
    model_name: Name = Field(min_length=1)
    skills: Items[Name] = Field(default_factory=list)
    hide_tools_without_skill: bool = False
    always_visible_tools: Items[Name] = Field(default_factory=list)
    enable_bash: bool = False
    bash_options: BashOptions | None = None
    knowledge_collections: Items[Name] = Field(default_factory=list)
    reranker_name: Name | None = None
    knowledge_base_maximum_results: int = 5
    knowledge_base_minimum_score: float = 0.0
    knowledge_use_references: bool = False
    knowledge_use_meta_descriptions: bool = False
    query_strategy: QueryStrategy = QueryStrategy.PLAIN
    query_strategy_parameters: QueryStrategyParameters = Field(default_factory=QueryStrategyParameters)
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: Text | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    context_maximum_size: int | None = Field(default=None, ge=1)
    context_overflow_action: ContextOverflowAction = ContextOverflowAction.THROW
    system_instruction: Document | None = None
    worker_script_source: Url | None = None
    user_prompt_template: LongText | None = None
    assistant_prefill: LongText | None = None
    include_prefilling_in_messages: bool = False
    reasoning_effort: Name | None = None
    verbosity: Name | None = None
    flags: Items[GatewayFlag] = Field(default_factory=list)
    tools: Items[JsonValue] | None = None
    protocol_functions: Items[ProtocolFunction] = Field(default_factory=list)
    protocol_function_sources: Items[Url] = Field(default_factory=list)
    mcp_sources: Items[RemoteResource] = Field(default_factory=list)
    system_instructions_sources: Items[RemoteResource] = Field(default_factory=list)
    enabled_multimodal_features: Items[MultimodalFeature] = Field(default_factory=list)
    tool_context_count: int | None = Field(default=None, ge=0)
    sentinel_options: SentinelOptions | None = None
    builtin_functions_options: BuiltinFunctionsOptions | None = None
    moderation_parameters: ModerationParameters | None = None
    known_tool_handler_name: Name | None = None
    tool_invocation_explanations: bool = False
    model_routing_parameters: ModelRoutingParameters | None = None
    additional_settings: JsonObject | None = None

    @field_validator("worker_script_source")
    @classmethod
    def _valid_worker(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not WORKER_URL.match(value):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("base_address")
    @classmethod
    def _valid_base_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not CALLBACK_URL.match(value):
            raise ValueError("must be an absolute http(s) URL or aivax://query-collection?collection-id=...")
        return value.rstrip("/")

    def upstream_problem(self) -> str | None:
        """Why these parameters name no upstream, or two (a sentence naming the field); None when fine.
        Checked where parameters are saved, not by a validator: a PATCH is validated field by field."""
        if self.llm_connection_id is None and self.base_address is None:
            return ("Invalid value for parameters.baseAddress: give it, or llmConnectionId to use a saved "
                    "LLM connection.")
        if self.llm_connection_id is not None and (self.base_address is not None or self.api_key is not None):
            field = "baseAddress" if self.base_address is not None else "apiKey"
            return (f"Invalid value for parameters.{field}: leave it out with llmConnectionId "
                    "(the connection's endpoint and key are used).")
        return None

    def has_flag(self, flag: GatewayFlag) -> bool:
        return flag in self.flags


API_KEY_MASK = MASK
HEADER_LISTS = ("protocolFunctions", "systemInstructionsSources", "mcpSources")
"""Parameter lists whose items carry HTTP headers (masked in answers)."""


URL_OF_ITEM = {"protocolFunctions": "callbackUrl", "systemInstructionsSources": "url", "mcpSources": "url"}
"""Where each header-carrying item sends its headers."""


def restore_masked_headers(given: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """A PATCH that sends back masked header values keeps the stored ones: matched by item name, and
    only while the item's URL is unchanged (else SecretNeeded: the header must be sent again)."""
    merged = dict(given)
    for field in HEADER_LISTS:
        if not isinstance(given.get(field), list):
            continue
        url_key = URL_OF_ITEM[field]
        by_name = {item.get("name"): item for item in stored.get(field) or [] if isinstance(item, dict)}
        restored = []
        for index, item in enumerate(given[field]):
            if isinstance(item, dict) and isinstance(item.get("headers"), dict):
                before = by_name.get(item.get("name")) or {}
                previous = before.get("headers") or {}
                moved = not same_destination(before.get(url_key), item.get(url_key))
                for key, value in item["headers"].items():
                    if value == API_KEY_MASK and key in previous and moved:
                        raise SecretNeeded(f"parameters.{field}.{index}.headers.{key}", f"its {url_key}")
                headers = {
                    key: previous[key] if value == API_KEY_MASK and key in previous else value
                    for key, value in item["headers"].items()
                    if value != API_KEY_MASK or key in previous
                }
                item = {**item, "headers": headers}
            restored.append(item)
        merged[field] = restored
    return merged


def keep_masked_api_key(patch: dict[str, Any], stored: GatewayParameters) -> str | None:
    """The apiKey of a PATCH that sent it masked or not at all: the stored key, unless baseAddress
    changes (SecretNeeded: the key must be sent again)."""
    address = patch.get("baseAddress", stored.base_address)
    if stored.api_key and not same_destination(stored.base_address, address):
        raise SecretNeeded("parameters.apiKey", "baseAddress")
    return stored.api_key


class Gateway(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    name: str
    slug: str
    parameters: GatewayParameters
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def public_parameters(self) -> dict[str, Any]:
        """The parameters as returned by the API: the upstream apiKey and every header value masked
        (headers of callbacks and sources usually carry credentials)."""
        data = self.parameters.wire()
        data["apiKey"] = API_KEY_MASK if self.parameters.api_key else None
        for field in HEADER_LISTS:
            for item in data.get(field) or []:
                item["headers"] = dict.fromkeys(item.get("headers") or {}, API_KEY_MASK)
        return data


def slugify(name: str) -> str:
    """A URL-friendly slug: ascii, lowercase, words joined by '-'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug or "gateway"
