"""Typed configuration: a YAML file, `${VAR:-default}` interpolation, then BOTLINE_* env overrides.

Precedence (highest first): environment (`BOTLINE_SERVER__PORT=9000`), the YAML file, defaults.
Every problem is reported as one `ConfigError` line that names the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from botline.domain.gateways import GatewayParameters
from botline.egress.policy import parse_allow_entry
from botline.shell.settings import ShellSettings

DEFAULT_CONFIG_FILE = "config.yaml"
CONFIG_FILE_ENV = "BOTLINE_CONFIG"


class ConfigError(Exception):
    """A configuration problem, worded as one line naming the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None
    """Base of talkUrl and webhook URLs; default http://{host}:{port}."""
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_json_separators: int = Field(default=200_000, ge=1000)
    """Commas and opening brackets a JSON body may hold (413 past it): bounds the time parsing takes."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    """Reverse proxies whose X-Forwarded-For is believed (the per-address login limit needs the client's)."""
    metrics_token: SecretStr | None = None
    """When set, GET /metrics needs `Authorization: Bearer <token>`; unset, it is open (no secrets or ids)."""

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class StorageSettings(Section):
    url: str = "sqlite:///./data/botline.db"
    redis_prefix: str = "botline"
    redis_max_connections: int = Field(default=200, ge=1)
    """A busy moment waits (within redis_timeout_seconds) for a free Redis connection instead of failing at once."""
    redis_timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest wait to connect to Redis, and for each Store call as a whole (not per command): past it a
    request answers 503 instead of hanging."""

    @model_validator(mode="after")
    def _known_scheme(self) -> StorageSettings:
        if not self.url.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            raise ValueError("url must start with sqlite:/// or redis://")
        return self


class AuthSettings(Section):
    admin_keys: list[SecretStr] = Field(default_factory=list)
    login_attempts_per_minute: int = Field(default=10, ge=1)
    key_cache_seconds: float = Field(default=10.0, ge=0)
    """How long a verified API key is trusted from memory before the Store is asked again."""
    max_keys_per_account: int = Field(default=100, ge=1)
    """API keys (login access tokens included) an account may hold; creating one more answers 409."""


class ProviderSettings(Section):
    api_url: str


class TelegramSettings(ProviderSettings):
    mode: Literal["auto", "webhook", "polling"] = "auto"
    """auto: webhooks when server.public_url is public, long polling when it is localhost."""


class ProvidersSettings(Section):
    telegram: TelegramSettings = TelegramSettings(api_url="https://api.telegram.org")
    zapi: ProviderSettings = ProviderSettings(api_url="https://api.z-api.io")
    kapso: ProviderSettings = ProviderSettings(api_url="https://api.kapso.ai")


class LLMSettings(Section):
    client: Literal["lean", "sdk"] = "lean"
    """Who makes a turn's model call: botline's own aiohttp client (`lean`), or the openai SDK (`sdk`)."""
    sdk_base_addresses: list[str] = Field(default_factory=list, max_length=1000)
    """Gateway baseAddresses (as saved, a trailing slash ignored) whose turns use the SDK client even when
    `client` is lean: the fallback for one provider's quirk."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries on 408/409/429/5xx and connection errors (the openai SDK's backoff, Retry-After honoured)."""
    request_timeout_seconds: float = Field(default=120.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    max_tool_rounds: int = Field(default=8, ge=1, le=64)
    tool_call_timeout_seconds: float = Field(default=30.0, gt=0)
    context_location_timeout_seconds: float = Field(default=3.0, gt=0)
    function_sources_cache_seconds: float = Field(default=600.0, ge=0)
    max_connections: int = Field(default=0, ge=0)
    """Concurrent model calls per upstream (each open stream holds one); 0 = no cap (the SDK's is 1,000)."""
    gateway_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a gateway's settings are reused from memory; edits reach other replicas within it."""


class ChannelSettings(Section):
    max_concurrent_turns: int = Field(default=8, ge=1)
    """Channel turns running at once per process; the rest wait, recorded, so webhooks stay fast to ack."""


class WebChatSettings(Section):
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest image, document or audio file a chat page may upload (the body cap must allow it)."""
    transcription_model: str = "whisper-1"
    """Model asked at the gateway's /audio/transcriptions for voice uploads."""
    poll_seconds: float = Field(default=15.0, gt=0)
    """How often an open chat page looks for messages the assistant added on its own (continuations)."""
    client_cache_seconds: float = Field(default=5.0, ge=0)
    """A chat client's settings are reused this long (edits reach other replicas within it)."""
    max_pending_prompts: int = Field(default=3, ge=1)
    """Prompts one session may have running or waiting for its turn on a replica; more get 429."""
    max_prompt_parts: int = Field(default=10, ge=1)
    """Content parts (the text and each attachment) one prompt may carry; more get 413."""
    media_session_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    """Images, files and spoken audio of a session's answers kept with the conversation (shown again after a
    reload; deleted with the session), at most this many bytes in all; later ones are shown live only."""
    chat_origin: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+/?$")
    """Origin (scheme://host[:port]) the chat pages are served from, apart from the API's: talkUrls use
    it, and customScripts are accepted only when it is set (docs/webchat.md)."""


class ParsingSettings(Section):
    """Uploaded documents (PDF) are parsed in worker processes, never on the event loop."""

    workers: int = Field(default=2, ge=1, le=64)
    """Worker processes (started when the first document arrives); further documents wait in line."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    """A document still being read after this is given up; its worker is killed and replaced."""
    max_pages: int = Field(default=100, ge=1)
    max_chars: int = Field(default=100_000, ge=1)
    """Text kept from one document; extraction stops once it is reached."""
    max_input_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_stream_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """Decompressed size of any one stream inside a document (a page's content, an image)."""
    max_memory_mb: int = Field(default=1024, ge=0)
    """Address-space limit of each worker; 0 = none."""
    max_queued: int = Field(default=32, ge=0)
    """Documents waiting for a worker beyond this are refused (503) instead of queued."""


class SchedulerSettings(Section):
    misfire_grace_seconds: float = Field(default=600, ge=0)
    """A firing missed while botline was down is still delivered at start if it is at most this late."""
    min_delay_seconds: float = Field(default=60, ge=0)
    max_delay_days: float = Field(default=365, gt=0)
    min_cron_interval_seconds: float = Field(default=300, ge=0)
    max_active_per_user: int = Field(default=10, ge=1)
    allow_seconds_in_cron: bool = False
    """Tests only: lets a 6-field cron (with seconds) through."""
    sync_interval_seconds: float = Field(default=30, gt=0)
    """How often each replica reloads schedules created by the others."""
    continuations_per_user_per_hour: int = Field(default=12, ge=0)
    """Scheduled continuations that may fire per user and chat client in an hour; past it a firing is
    skipped and recorded as such. 0 = no budget."""


class MemorySettings(Section):
    max_per_user: int = Field(default=500, ge=1, le=10_000)
    """Memories (notes and calendar reminders together) one user may hold; memory_save then asks the model to
    remove or update one. It also bounds what a search reads: the user's most recent this many."""


class ToolsSettings(Section):
    """MCP sources and workers (docs/tools.md)."""

    mcp_call_timeout_seconds: float = Field(default=30.0, gt=0)
    """A tools/call that takes longer fails that tool call (the turn goes on)."""
    mcp_list_timeout_seconds: float = Field(default=10.0, gt=0)
    """Connecting and listing a source's tools; a source that takes longer is left out of that turn."""
    mcp_max_connections: int = Field(default=64, ge=1)
    """MCP sessions kept open for reuse (least recently used closed first)."""
    mcp_idle_seconds: float = Field(default=300.0, gt=0)
    """An MCP session unused this long is closed."""
    mcp_max_tools_per_source: int = Field(default=128, ge=1, le=1024)
    mcp_response_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest HTTP response (or SSE stream) an MCP server may send for one request."""
    tool_output_max_chars: int = Field(default=64 * 1024, ge=256)
    """What the model reads back from one MCP tool call, at most (longer text is cut with a notice)."""
    mcp_image_max_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)
    """Largest image (decoded) of an MCP tool result shown to the model and sent to the user; a larger one
    becomes a short notice. The whole response is capped by mcp_response_max_bytes first."""
    worker_timeout_seconds: float = Field(default=5.0, gt=0)
    """A worker (workerScriptSource) that takes longer has failed: the turn goes on unchanged, unless the
    gateway has the WorkerFailClosed flag."""
    worker_response_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest answer a worker may send (a larger one has failed, as above)."""


SpeechSourceName = Literal["Gpt4oTts", "ElevenMultilingualV2", "ElevenV3", "GrokVoice"]
"""The seed's `audioSynthesisSource` values (besides "None")."""


class GovernanceSettings(Section):
    """AI policies (docs/governance.md)."""

    judge_model: str | None = None
    """The model that checks turns against the account's policies, on the gateway's own upstream;
    unset: the gateway's modelName."""
    judge_max_tokens: int = Field(default=400, ge=16, le=8192)
    judge_timeout_seconds: float = Field(default=30.0, gt=0)
    max_checked_chars: int = Field(default=32_000, ge=1000)
    """Text given to the judge per phase at most (the newest part of the input, the start of the answer)."""
    refusal_text: str = ("I'm sorry, I can't help with that: it goes against the usage policy of this assistant.")
    """What the person reads instead of a blocked answer, or in answer to a blocked message."""
    moderation_model: str = "omni-moderation-latest"
    """Asked at the gateway's upstream POST /moderations for moderationParameters."""
    routing_classifier_model: str | None = None
    """The model that rates a request's complexity for modelRoutingParameters, on the gateway's upstream;
    unset: the gateway's lowComplexityModelName."""
    routing_timeout_seconds: float = Field(default=10.0, gt=0)
    """A classifier slower than this (or failing) leaves the turn on the gateway's own modelName."""
    input_check: Literal["parallel", "sequential"] = "parallel"
    """parallel: the input policy check runs beside the model call, the answer held (no text, no tool run)
    until it passed; sequential: the check runs first, so a blocked message never reaches the model.
    An account may choose for itself (parameters.governance.inputCheck)."""
    alert_attempts: int = Field(default=5, ge=1, le=20)
    """Tries to POST one policy alert to the account's alertWebhookUrl (429, 5xx and failures are retried)."""
    alert_backoff_seconds: float = Field(default=2.0, ge=0)
    """Wait before the second try, doubled each time after (Retry-After wins when the webhook sends one)."""
    alert_timeout_seconds: float = Field(default=10.0, gt=0)


class SpeechSourceSettings(Section):
    """One `audioSynthesisSource`: an OpenAI-compatible POST {base_url}/audio/speech."""

    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    """Unset: the chat client's gateway upstream (its baseAddress and apiKey), as transcription does."""
    api_key: SecretStr | None = None
    default_voice: str = Field(default="alloy", min_length=1)
    """Used when the client sets no audioSynthesisVoice."""
    instructions: bool = True
    """Whether the endpoint takes `instructions` (audioSynthesisInstruction); False drops them."""


def _default_speech_sources() -> dict[SpeechSourceName, SpeechSourceSettings]:
    return {"Gpt4oTts": SpeechSourceSettings(model="gpt-4o-mini-tts", default_voice="nova")}


class SpeechSettings(Section):
    """Spoken answers (docs/gateways.md, "Spoken answers")."""

    sources: dict[SpeechSourceName, SpeechSourceSettings] = Field(default_factory=_default_speech_sources)
    """Configured sources; a chat client naming any other is refused at save time (400)."""
    summary_model: str | None = None
    """Model that shortens answers for summarizeTextBeforeAudioSynthesis; unset: the gateway's own model."""
    summarize_over_chars: int = Field(default=400, ge=0)
    """Answers at most this long are spoken as they are, even with summarizeTextBeforeAudioSynthesis."""
    max_input_chars: int = Field(default=4096, ge=16, le=100_000)
    """Text sent to one synthesis (OpenAI's limit is 4096); longer text is cut at a sentence."""
    max_audio_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest audio body read from a speech endpoint; a longer one is dropped (the text still goes)."""
    timeout_seconds: float = Field(default=60.0, gt=0)
    cache_seconds: float = Field(default=3600.0, ge=0)
    """How long synthesised audio is kept in the Store (shared by every replica) for the same text, voice
    and instruction; 0 keeps none. A web answer's audio is also kept with its conversation."""


class ModelPrice(Section):
    """What one upstream model costs, in the operator's currency per million tokens."""

    input_per_million: float = Field(default=0.0, ge=0)
    output_per_million: float = Field(default=0.0, ge=0)


class BatchSettings(Section):
    """Batch workflows: how items are claimed and run (docs/batch.md)."""

    poll_seconds: float = Field(default=1.0, gt=0)
    """How often a replica looks for claimable items when nothing woke it (pause takes effect at once)."""
    lease_seconds: float = Field(default=60.0, gt=0)
    """A claimed item whose worker stops renewing its lease (a crash) is claimed again after this."""
    max_concurrent_items: int = Field(default=32, ge=1)
    """Items running at once in this process, across every job and account."""
    max_concurrent_per_job: int = Field(default=16, ge=1)
    """Items of one job under a live claim at once, counted in the Store across every replica."""
    max_concurrent_per_account: int = Field(default=32, ge=1)
    """Items of one account's jobs under a live claim at once, across every replica."""
    max_items_per_job: int = Field(default=100_000, ge=1)
    """An import past it skips the extra lines."""
    retry_base_seconds: float = Field(default=1.0, ge=0)
    """First backoff after an upstream error (doubled each time, with jitter; Retry-After wins when given)."""
    retry_max_seconds: float = Field(default=60.0, ge=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """By upstream model name (the gateway's modelName); a model not listed costs 0."""


class EmbeddingsSettings(Section):
    """Where document and query vectors come from (docs/knowledge.md, "Semantic search")."""

    provider: Literal["local", "openai", "off"] = "local"
    """`local`: the embedded all-MiniLM-L6-v2 on onnxruntime (no server, no download); `openai`: an
    OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, TEI, vLLM, LM Studio); `off`: lexical only."""
    base_address: str | None = None
    """The endpoint's base URL (…/v1) with provider `openai`."""
    api_key: SecretStr | None = None
    model: str | None = None
    """The embedding model's name with provider `openai` (e.g. text-embedding-3-small, nomic-embed-text)."""
    dimensions: int | None = Field(default=None, ge=1, le=4096)
    """Asked of the endpoint (`dimensions`), for models that can shorten their vectors; unset: the model's own."""
    batch_size: int = Field(default=32, ge=1, le=2048)
    """Texts per embedding call (one onnxruntime run, or one `/embeddings` request)."""
    threads: int = Field(default=0, ge=0, le=64)
    """onnxruntime threads of the local model; 0: the machine's cores."""
    quantized: bool = False
    """The local model with int8 weights: about 2x faster, vectors at cosine 0.98-0.99 of the exact ones."""

    @model_validator(mode="after")
    def _remote_complete(self) -> EmbeddingsSettings:
        if self.provider == "openai" and not (self.base_address and self.model):
            raise ValueError("knowledge.embeddings.base_address and knowledge.embeddings.model are needed"
                             " with provider openai")
        return self


class QdrantSettings(Section):
    url: str | None = None
    """A Qdrant server (http://host:6333); unset with vector_store qdrant: qdrant-client's local mode in `path`."""
    api_key: SecretStr | None = None
    path: str = "./data/qdrant"
    """qdrant-client's embedded (local) mode: one process only, for trying Qdrant out (":memory:": nothing kept)."""
    prefix: str = "botline"
    """Qdrant collection names start with it (several botline installations can share a server)."""


class KnowledgeSettings(Section):
    """Knowledge collections (docs/knowledge.md): import limits, the indexer, /api/v1/answer."""

    max_import_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    """Largest JSONL file one import may upload (server.max_body_bytes caps every request too)."""
    max_import_lines: int = Field(default=10_000, ge=1)
    """Documents one JSONL import may hold."""
    max_document_chars: int = Field(default=100_000, ge=1, le=256 * 1024)
    """Longest text of one document (a JSONL line's text, a PUT's contents)."""
    max_collections_per_account: int = Field(default=100, ge=1)
    index_batch: int = Field(default=256, ge=1, le=10_000)
    """Documents one indexer claims at a time."""
    analysis_processes: int = Field(default=1, ge=0, le=64)
    """Worker processes that analyse documents for the lexical index (0: a thread of the server process)."""
    index_lease_seconds: float = Field(default=300.0, gt=0)
    """A claimed document that is neither indexed nor failed after this (its replica died) is claimed again."""
    index_poll_seconds: float = Field(default=5.0, gt=0)
    """How often each replica looks for queued documents besides the signal a write sends."""
    index_max_attempts: int = Field(default=5, ge=1)
    """Tries per document before it is given up (Cancelled, with the last error as indexError)."""
    answer_gateway: str | None = None
    """Slug or id (in the calling account) of the gateway /api/v1/answer asks; unset: the account's oldest
    gateway that has a model."""
    max_file_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    """Largest file one upload (POST .../files: PDF, DOCX, HTML, Markdown, text) may send."""
    max_file_chars: int = Field(default=2_000_000, ge=1)
    """Text one uploaded file may hold once extracted; a larger file is refused, not cut."""
    max_file_pages: int = Field(default=1_000, ge=1)
    """Pages read from an uploaded PDF; a longer PDF is refused."""
    max_file_documents: int = Field(default=2_000, ge=1)
    """Documents (chunks) one uploaded file may make."""
    chunk_chars: int = Field(default=1_500, ge=200)
    """Target size of one chunk of an uploaded file (code blocks and tables are kept whole, so may pass it)."""
    chunk_overlap_chars: int = Field(default=200, ge=0)
    """Characters a chunk continuing a section repeats from the previous chunk."""
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    vector_store: Literal["embedded", "qdrant"] = "embedded"
    """`embedded`: vectors in the Store (SQLite or Redis), searched in memory; `qdrant`: a Qdrant server."""
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)

    @model_validator(mode="after")
    def _chunks_fit(self) -> KnowledgeSettings:
        if self.chunk_chars > self.max_document_chars:
            raise ValueError("knowledge.chunk_chars must not exceed knowledge.max_document_chars")
        if self.chunk_overlap_chars * 2 > self.chunk_chars:
            raise ValueError("knowledge.chunk_overlap_chars must be at most half of knowledge.chunk_chars")
        return self


class GatewayDefinition(Section):
    """A gateway declared in the file, created or updated at start in the admin account."""

    name: str = Field(min_length=1)
    parameters: dict[str, Any]

    @property
    def complete(self) -> bool:
        """False when the upstream is not configured (e.g. OPENAI_MODEL unset): it is skipped."""
        return bool(self.parameters.get("baseAddress")) and bool(self.parameters.get("modelName"))

    @model_validator(mode="after")
    def _valid_parameters(self) -> GatewayDefinition:
        if self.complete:
            try:
                GatewayParameters.model_validate(self.parameters)
            except ValidationError as exc:
                first = exc.errors()[0]
                detail = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"parameters.{_error_location(first)}: {detail}") from None
        return self


def _allow_entry(entry: str) -> str:
    parse_allow_entry(entry)
    return entry


class EgressSettings(Section):
    """What tenants' URLs may reach, and how much botline reads back (docs/security.md)."""

    allow: list[Annotated[str, AfterValidator(_allow_entry)]] = Field(default_factory=list)
    """CIDRs and/or host[:port] that tenants may reach although they are internal (an on-prem model)."""
    max_redirects: int = Field(default=5, ge=0, le=20)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    source_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest instruction source, function source or contextLocation body."""
    source_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Memory for cached instruction and function sources (least recently used dropped first)."""
    tool_response_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest answer of a protocol function's callback (what the model reads back)."""
    tool_media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest image or file a protocol function's callback may answer with (sent to the user)."""
    provider_response_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest answer of a provider API (Z-API, Evolution, Kapso sends and registrations)."""
    media_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """Largest media file downloaded from a provider."""
    model_response_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest answer of a model call, streamed or not."""


class SecuritySettings(Section):
    egress: EgressSettings = Field(default_factory=EgressSettings)


class LoggingSettings(Section):
    level: str = "INFO"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOTLINE_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    providers: ProvidersSettings = Field(default_factory=ProvidersSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    webchat: WebChatSettings = Field(default_factory=WebChatSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    shell: ShellSettings = Field(default_factory=ShellSettings)
    gateways: list[GatewayDefinition] = Field(default_factory=list)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must win over it.
        return env_settings, init_settings


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, environ: dict[str, str] | None = None) -> str:
    """Replaces `${VAR}` and `${VAR:-default}` with environment values (empty when unset)."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        return value if value else (match.group(2) or "")

    return _ENV_REFERENCE.sub(replace, text)


def resolve_config_path(explicit: str | None) -> Path | None:
    """--config, else $BOTLINE_CONFIG, else ./config.yaml when it exists, else none (defaults)."""
    if explicit:
        return Path(explicit)
    if env_path := os.environ.get(CONFIG_FILE_ENV):
        return Path(env_path)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def _error_location(error: Mapping[str, Any]) -> str:
    parts = [str(p) for p in error["loc"] if not str(p).startswith("function-")]
    return ".".join(parts) or "config"


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Loads and validates the configuration; raises ConfigError with one readable line."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(interpolate(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path}{where}: invalid YAML") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping of sections")
        data = loaded or {}
    for section, values in overrides.items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        location = _error_location(first)
        if message.startswith("parameters."):
            location, _, message = f"{location}.{message}".partition(": ")
        raise ConfigError(f"config key {location}: {message}") from exc
    except SettingsError as exc:
        raise ConfigError(_environment_error(str(exc))) from exc


def _environment_error(detail: str) -> str:
    """pydantic-settings refuses an environment value it cannot decode: a list or mapping that is not JSON."""
    field = re.search(r'field "(\w+)"', detail)
    prefix = f"BOTLINE_{field.group(1).upper()}" if field else "BOTLINE_"
    names = sorted(name for name in os.environ if name.upper().startswith(prefix))
    return f"environment {', '.join(names) or prefix}: lists and mappings must be JSON, e.g. [\"a\", \"b\"]"
