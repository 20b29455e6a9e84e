"""Prometheus metrics, one registry per application (served at GET /metrics).

Each app builds its own `Metrics` and hands it to the components that record, so two apps in one
process (tests, benchmarks) count apart. Labels come from small fixed sets (channel, outcome,
provider, store operation) plus a model name (capped, or only the operator's own: `declared_models`);
never account, session, chat or user ids: every label value is a time series Prometheus keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

MODEL_LABEL_LIMIT = 20
"""Distinct model names labelled per process; later ones are counted as OTHER."""
OTHER = "other"

MODEL_SECONDS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
FIRST_TOKEN_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
ACK_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LATENESS_SECONDS = (0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300)

M = TypeVar("M", Counter, Gauge, Histogram)


class Outcome(StrEnum):
    """How a turn ended. REFUSED: by a limit or policy (rate limit, maxMessages, context too large)
    before or instead of an answer; FAILED: the model or botline could not answer."""

    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"


class SpeechOutcome(StrEnum):
    """What became of an ask for a spoken answer: synthesised by the endpoint, served from the audio cache
    (or shared with an identical ask in flight), or failed (the text went alone)."""

    SYNTHESIZED = "synthesized"
    CACHED = "cached"
    FAILED = "failed"


class _Labelled(Generic[M]):
    """A metric's children by label values, cached in a plain dict: one lookup on the hot path
    instead of prometheus_client's validation and lock on every `labels()` call."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class BoundedLabel:
    """Passes the first `limit` distinct values through and maps later ones to OTHER.

    Model names are chosen freely by whoever configures a gateway, so they are not a bounded set;
    a deployment's handful of models keeps its own series, a runaway list cannot grow the scrape.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER


class DeclaredLabel:
    """Passes only the given values through (the models of the gateways declared in the config file) and
    maps every other to OTHER: an open /metrics then names no model a tenant chose."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self._allowed = allowed

    def __call__(self, value: str) -> str:
        return value if value in self._allowed else OTHER


class Metrics:
    """Every metric botline records (docs/observability.md lists them)."""

    def __init__(
        self, *, model_label_limit: int = MODEL_LABEL_LIMIT, declared_models: frozenset[str] | None = None,
    ) -> None:
        """`declared_models` set: only those model names are labels (for an open /metrics); None: the first
        `model_label_limit` names seen (behind server.metrics_token)."""
        self.registry = registry = CollectorRegistry()
        self._model: Callable[[str], str] = (
            BoundedLabel(model_label_limit) if declared_models is None else DeclaredLabel(declared_models))
        self.turns = _Labelled(Counter(
            "botline_turns", "Conversation turns by channel and outcome.", ["channel", "outcome"], registry=registry))
        self.model_seconds = _Labelled(Histogram(
            "botline_model_call_seconds", "Duration of successful model calls (one per tool round).", ["model"],
            buckets=MODEL_SECONDS, registry=registry))
        self.first_token_seconds = _Labelled(Histogram(
            "botline_model_first_token_seconds", "Time from a streamed model call to its first text or reasoning.",
            ["model"], buckets=FIRST_TOKEN_SECONDS, registry=registry))
        self.model_errors = _Labelled(Counter(
            "botline_model_call_errors", "Model calls that failed after the SDK's retries.", ["model"],
            registry=registry))
        self.tokens = _Labelled(Counter(
            "botline_model_tokens", "Tokens by model and kind (prompt, completion); estimated when the upstream "
            "reports none.", ["model", "kind"], registry=registry))
        self.webhook_ack_seconds = _Labelled(Histogram(
            "botline_webhook_ack_seconds", "Time to acknowledge an accepted provider webhook.", ["provider"],
            buckets=ACK_SECONDS, registry=registry))
        self.duplicates = _Labelled(Counter(
            "botline_inbound_duplicates", "Inbound messages refused as re-deliveries of one already recorded.",
            ["provider"], registry=registry))
        self.merged = _Labelled(Counter(
            "botline_inbound_merged_messages", "Inbound messages answered in the same turn as an earlier one "
            "(debounce window, or written while a turn ran).", ["provider"], registry=registry))
        self.activations = _Labelled(Counter(
            "botline_schedule_activations", "Scheduled continuations fired, by outcome.", ["outcome"],
            registry=registry))
        self.lateness_seconds = Histogram(
            "botline_schedule_lateness_seconds", "How late a scheduled continuation started after its due time "
            "(firings missed while botline was down are not observed).", buckets=LATENESS_SECONDS,
            registry=registry)
        self.send_failures = _Labelled(Counter(
            "botline_outbound_send_failures", "Replies a provider did not accept after every retry.", ["provider"],
            registry=registry))
        self.send_retries = _Labelled(Counter(
            "botline_outbound_send_retries", "Provider sends retried after a 429, 5xx or connection failure.",
            ["provider"], registry=registry))
        self.open_streams = _Labelled(Gauge(
            "botline_sse_streams_open", "Server-sent event streams open now.", ["endpoint"], registry=registry))
        self.store_errors = _Labelled(Counter(
            "botline_store_errors", "Store operations that failed, by backend, operation and error kind.",
            ["backend", "operation", "error"], registry=registry))
        self.store_operations = _Labelled(Counter(
            "botline_store_operations", "Store operations started, by backend and operation (one called by another "
            "counts too): what a turn costs the Store.", ["backend", "operation"], registry=registry))
        self.batch_items = _Labelled(Counter(
            "botline_batch_items", "Batch items processed, by final state (its rate is the throughput).", ["state"],
            registry=registry))
        self.batch_item_seconds = Histogram(
            "botline_batch_item_seconds", "Time to process one batch item (every model call and retry in it).",
            buckets=MODEL_SECONDS, registry=registry)
        self.batch_running = Gauge(
            "botline_batch_items_running", "Batch items this process is running now.", registry=registry)
        self.documents_indexed = _Labelled(Counter(
            "botline_knowledge_documents_indexed", "Knowledge documents indexed, by outcome (indexed, retried, "
            "failed: given up, the document is Cancelled with its reason).", ["outcome"], registry=registry))
        self.speech_requests = _Labelled(Counter(
            "botline_speech_requests", "Spoken answers asked for, by speech source and outcome (synthesized, "
            "cached, failed).", ["source", "outcome"], registry=registry))
        self.speech_characters = _Labelled(Counter(
            "botline_speech_characters", "Characters sent to speech endpoints (after preparation and summary).",
            ["source"], registry=registry))
        self.policy_checks = _Labelled(Counter(
            "botline_policy_checks", "AI policy checks by phase (input, output) and outcome (passed, violated, "
            "blocked, failed: the judge could not answer, the turn went on).", ["phase", "outcome"],
            registry=registry))
        self.moderation_checks = _Labelled(Counter(
            "botline_moderation_checks", "moderationParameters checks by outcome (passed, withheld, failed: the "
            "moderation call failed and the message went on).", ["outcome"], registry=registry))
        self.routed_turns = _Labelled(Counter(
            "botline_routed_turns", "Turns of gateways with modelRoutingParameters, by the complexity that chose "
            "their model (unrouted: the classifier failed, the gateway's modelName served).", ["complexity"],
            registry=registry))
        self.policy_alerts = Counter(
            "botline_policy_alerts", "Violations of policies whose action is alert or block.", registry=registry)
        self.policy_alert_deliveries = _Labelled(Counter(
            "botline_policy_alert_deliveries", "Policy alerts POSTed to the account's alertWebhookUrl, by outcome "
            "(delivered, failed: every attempt failed, skipped: already claimed by another attempt or replica).",
            ["outcome"], registry=registry))
        self.usage_limit_refusals = _Labelled(Counter(
            "botline_usage_limit_refusals", "Turns refused because a usage limit was reached, by whose limit "
            "(account, API key) and which (tokens_per_day, spend_per_month).", ["subject", "limit"],
            registry=registry))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything recorded."""
        return generate_latest(self.registry)

    def turn(self, channel: str, outcome: Outcome) -> None:
        self.turns(channel, outcome.value).inc()

    def model_call(
        self, model: str, seconds: float, *, first_token_seconds: float | None, prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        label = self._model(model)
        self.model_seconds(label).observe(seconds)
        if first_token_seconds is not None:
            self.first_token_seconds(label).observe(first_token_seconds)
        self.tokens(label, "prompt").inc(prompt_tokens)
        self.tokens(label, "completion").inc(completion_tokens)

    def speech(self, source: str, outcome: SpeechOutcome, *, characters: int = 0) -> None:
        """`source` is one of the seed's few audioSynthesisSource names (config refuses others)."""
        self.speech_requests(source, outcome.value).inc()
        if characters:
            self.speech_characters(source).inc(characters)

    def model_error(self, model: str) -> None:
        self.model_errors(self._model(model)).inc()

    def store_error_listener(self, backend: str) -> Callable[[str, str], None]:
        """What `Store.report_errors` calls with each failure (operation, error kind)."""

        def count(operation: str, kind: str) -> None:
            self.store_errors(backend, operation, kind).inc()

        return count

    def store_operation_listener(self, backend: str) -> Callable[[str], None]:
        """What `Store.report_errors` calls as each operation starts."""

        def count(operation: str) -> None:
            self.store_operations(backend, operation).inc()

        return count
