"""Builds the aiohttp Application: one cleanup context per resource, unwound in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from botline.account_cache import AccountCache
from botline.accounts import admin_account, bootstrap_admin_keys
from botline.api import (
    accounts,
    admin,
    answer_files,
    batch_items,
    batch_workflows,
    chat_clients,
    chat_page,
    collections,
    documents,
    files,
    gateways,
    health,
    hook_schedules,
    integrations,
    llm_connections,
    mcp_inference,
    memories,
    metrics,
    openai_compat,
    openapi,
    policies,
    public_chat,
    rag,
    shell,
    skills,
    webhooks,
)
from botline.api import (
    handoff as handoff_routes,
)
from botline.api.auth import Authenticator, auth_middleware
from botline.api.cors import add_cors_headers, cors_preflight
from botline.api.errors import add_request_id, error_middleware, error_response
from botline.api.http import JSON_SEPARATORS
from botline.api.inflight import InFlightRequests
from botline.api.scopes import scope_middleware
from botline.api.state import SERVICES, Services
from botline.batch.processor import ItemProcessor
from botline.batch.runner import BatchRunner
from botline.channels.registry import channel_adapters
from botline.config import Settings
from botline.domain.clock import Clock, SystemClock
from botline.egress import Egress, EgressPolicy
from botline.engine.answer_files import AnswerFiles
from botline.engine.channels import ChannelHub
from botline.engine.chat import ChatEngine, PromptLimits
from botline.engine.client_cache import ChatClientCache
from botline.engine.handoff import HandoffService
from botline.engine.handoff_notify import HandoffNotifier
from botline.engine.handoff_owners import ProviderOwners
from botline.engine.handoff_tool import HandoffExtension
from botline.engine.inbound import InboundEngine
from botline.engine.locks import SessionLocks
from botline.engine.sessions import SessionService
from botline.engine.voice import VoiceReplies
from botline.gateway.accounting import UsageRecorder
from botline.gateway.connection_meter import ConnectionMeter
from botline.gateway.connections import ConnectionCache, Upstreams
from botline.gateway.llm import ClientPool
from botline.gateway.pipeline import PipelineServices, TurnPipeline
from botline.gateway.registry import GatewayCache, apply_declared
from botline.gateway.remote import RemoteFetcher
from botline.gateway.tokens import TokenCounters
from botline.gateway.tools import ResponseCaps
from botline.gateway.transcription import Transcriber
from botline.governance import PolicyCache, PolicyGuard
from botline.governance.alerts import AlertSender
from botline.governance.budget import UsageBudget
from botline.governance.judge import Judge
from botline.governance.moderation import Moderator
from botline.governance.routing import ComplexityRouter
from botline.knowledge import analysis_pool, semantic_setup
from botline.knowledge.asking import ModelAsker
from botline.knowledge.chunking import ChunkLimits
from botline.knowledge.indexer import Indexer
from botline.knowledge.retrieval import RetrievalStage
from botline.knowledge.search import KnowledgeSearch
from botline.knowledge.semantic import SemanticSearch
from botline.knowledge.strategies import QueryWriter
from botline.memory import MemoryExtension, MemoryService
from botline.metrics import Metrics
from botline.parsing import PdfExtractor, PdfLimits, PoolLimits, WorkerPool
from botline.parsing.files import FileLimits, FileSplitter
from botline.ratelimit import RateLimiter
from botline.scheduler.activation import ScheduleActivator
from botline.scheduler.service import Scheduler
from botline.scheduler.tools import ScheduleExtension
from botline.shell.files import ShellFiles, link_key
from botline.shell.local import LocalFileStore
from botline.shell.quota import Quotas
from botline.shell.s3 import S3FileStore
from botline.shell.sandbox import Sandbox
from botline.shell.storage import FileStore
from botline.shell.tool import BashExtension, Delivery
from botline.shell.workspace import LocalWorkspaces, SyncedWorkspaces, Workspaces
from botline.speech import Synthesizer
from botline.store import SQLITE_PREFIX, open_store
from botline.store.base import Store
from botline.tools.mcp_pool import McpPool
from botline.tools.mcp_tools import McpExtension, McpLimits
from botline.tools.nonce import RequestNonces
from botline.tools.skills import SkillsExtension
from botline.tools.workers import WorkerHook

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
EGRESS = web.AppKey("egress", Egress)
CLIENTS = web.AppKey("clients", ClientPool)
DOCUMENTS = web.AppKey("documents", PdfExtractor)
FILES = web.AppKey("files", FileSplitter)
ANALYSIS = web.AppKey("analysis", analysis_pool.Analysis)
IN_FLIGHT = web.AppKey("in_flight", InFlightRequests)
SHELL = web.AppKey("shell", ShellFiles)
SANDBOX = web.AppKey("sandbox", Sandbox)
WORKSPACES = web.AppKey("workspaces", Workspaces)
STARTUP_LEASE = "startup"

AdminKeyAnnouncer = Callable[[str], None]


async def drain_turns(app: web.Application) -> None:
    """On SIGTERM (before aiohttp waits for open requests): web-chat turns, channel workers,
    scheduled firings and open requests (a `/v1` stream) finish together within one
    `server.shutdown_grace_seconds`; what is left is abandoned at that deadline (docs/faults.md says
    what each one then does). Idempotent."""
    if SERVICES not in app:
        return
    svc = app[SERVICES]
    grace = svc.settings.server.shutdown_grace_seconds
    await asyncio.gather(svc.scheduler.close(grace), svc.inbound.close(grace), svc.chat.close(grace),
                         svc.batch.close(grace), app[IN_FLIGHT].wait_idle(grace))


def declared_model_names(settings: Settings) -> frozenset[str]:
    """The model names of the gateways declared in the config file: the operator's own, safe to label."""
    return frozenset(str(g.parameters["modelName"]) for g in settings.gateways if g.complete)


def build_app(
    settings: Settings, *, clock: Clock | None = None, announce_admin_key: AdminKeyAnnouncer | None = None
) -> web.Application:
    """The whole server. `announce_admin_key` receives a freshly created bootstrap key (shown once)."""
    in_flight = InFlightRequests()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            in_flight.middleware, error_middleware, cors_preflight,
            auth_middleware(lambda a: a[SERVICES].authenticator, error_response),
            scope_middleware(lambda a: a[SERVICES].limiter, error_response),
        ],
    )
    app[IN_FLIGHT] = in_flight
    app[JSON_SEPARATORS] = settings.server.max_json_separators
    app.on_response_prepare.extend([add_request_id, add_cors_headers])
    clock = clock or SystemClock()
    # An open /metrics names only the operator's models; behind the token, the first few of any account's.
    recorder = Metrics(declared_models=None if settings.server.metrics_token else declared_model_names(settings))

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        async with await open_store(
            settings.storage.url, redis_prefix=settings.storage.redis_prefix,
            redis_max_connections=settings.storage.redis_max_connections,
            redis_timeout_seconds=settings.storage.redis_timeout_seconds,
        ) as store:
            backend = "sqlite" if settings.storage.url.startswith(SQLITE_PREFIX) else "redis"
            store.report_errors(recorder.store_error_listener(backend), recorder.store_operation_listener(backend))
            app[STORE] = store
            yield

    async def egress_context(app: web.Application) -> AsyncIterator[None]:
        limits = settings.security.egress
        async with Egress(EgressPolicy(limits.allow), max_redirects=limits.max_redirects,
                          connect_timeout=limits.connect_timeout_seconds,
                          limit_per_host=settings.llm.max_connections) as egress:
            app[EGRESS] = egress
            app[CLIENTS] = ClientPool(settings.llm, egress, max_response_bytes=limits.model_response_max_bytes)
            yield

    async def parsing_context(app: web.Application) -> AsyncIterator[None]:
        """Document parsing and analysis workers: started with the first document, killed at shutdown."""
        parsing = settings.parsing
        limits = PoolLimits(workers=parsing.workers, timeout_seconds=parsing.timeout_seconds,
                            max_queued=parsing.max_queued, memory_limit_bytes=parsing.max_memory_mb * 1024 * 1024)
        knowledge = settings.knowledge
        analysis = analysis_pool.worker_pool(knowledge, memory_limit_bytes=limits.memory_limit_bytes)
        async with (WorkerPool(limits, preload=[PdfExtractor.__module__, FileSplitter.__module__]) as pool,
                    analysis or contextlib.nullcontext()):
            app[ANALYSIS] = analysis_pool.Analysis(analysis)
            app[DOCUMENTS] = PdfExtractor(pool, PdfLimits(
                max_pages=parsing.max_pages, max_chars=parsing.max_chars, max_stream_bytes=parsing.max_stream_bytes,
            ), max_input_bytes=parsing.max_input_bytes)
            app[FILES] = FileSplitter(pool, FileLimits(
                chunks=ChunkLimits(size=knowledge.chunk_chars, overlap=knowledge.chunk_overlap_chars,
                                   max_chunks=knowledge.max_file_documents, hard_max=knowledge.max_document_chars),
                max_chars=knowledge.max_file_chars, max_pages=knowledge.max_file_pages,
                max_unpacked_bytes=parsing.max_stream_bytes,
            ), max_input_bytes=knowledge.max_file_bytes)
            yield

    async def shell_context(app: web.Application) -> AsyncIterator[None]:
        """Shell files (local disk or S3), their quotas and link key, and the bash sandbox, checked once at start."""
        shell_settings = settings.shell
        sandbox = Sandbox(shell_settings.bash)
        file_store: FileStore
        if shell_settings.storage == "s3":
            file_store = await S3FileStore.open(shell_settings.s3)
            await sandbox.probe(shell_settings.scratch_path)
        else:
            file_store = LocalFileStore(shell_settings.local_path, owner=sandbox.owner)
            await sandbox.probe(shell_settings.local_path)
        if sandbox.unavailable:
            log.info("bash tool unavailable: %s", sandbox.unavailable)
        leases = SessionLocks(app[STORE].locks)
        quotas = Quotas(file_store, shell_settings, app[STORE].reservations, leases, clock)
        files = ShellFiles(file_store, shell_settings, quotas, await link_key(app[STORE].server_values, shell_settings))
        workspaces: Workspaces
        if isinstance(file_store, S3FileStore):
            workspaces = SyncedWorkspaces(files, file_store, shell_settings, app[STORE].locks, sandbox.owner)
        else:
            workspaces = LocalWorkspaces(file_store)
        app[SANDBOX], app[SHELL], app[WORKSPACES] = sandbox, files, workspaces
        yield
        await workspaces.close()
        await files.close()
        await leases.close()

    async def services_context(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        # Replicas starting together would each create the admin account, its keys and the declared
        # gateways (and fail on the uniqueness rules): one at a time, under a lease.
        startup = SessionLocks(store.locks)  # closed at shutdown: a release it retries may outlive start-up
        async with startup.hold(STARTUP_LEASE):
            new_key = await bootstrap_admin_keys(store, [k.get_secret_value() for k in settings.auth.admin_keys])
            if settings.gateways:
                await apply_declared(store, (await admin_account(store)).id, settings.gateways, clock)
        if new_key and announce_admin_key:
            announce_admin_key(new_key)
        usage = UsageRecorder(store.usage)
        await usage.start()
        meter = ConnectionMeter(store.llm_connections)
        await meter.start()
        account_cache = AccountCache(store, ttl=settings.auth.key_cache_seconds)
        await account_cache.start()
        connection_cache = ConnectionCache(store, ttl=settings.llm.gateway_cache_seconds)
        await connection_cache.start()
        upstreams = Upstreams(connection_cache, account_cache.trust)
        policy_cache = PolicyCache(store, ttl=settings.llm.gateway_cache_seconds)
        await policy_cache.start()
        alerts = AlertSender(store, app[EGRESS], account_cache, settings.governance, recorder, clock)
        guard = PolicyGuard(store, policy_cache, Judge(app[CLIENTS], settings.governance), accounts=account_cache,
                            connections=connection_cache, alerts=alerts, meter=meter, usage=usage,
                            metrics=recorder, clock=clock, settings=settings.governance)
        authenticator = Authenticator(store, account_cache, clock, cache_seconds=settings.auth.key_cache_seconds)
        await authenticator.start()
        memory = MemoryService(store, clock, max_per_user=settings.memory.max_per_user)
        semantic = semantic_setup.semantic(settings.knowledge, store, app[CLIENTS])
        indexer = Indexer(store, clock, settings.knowledge, recorder, semantic=semantic, analysis=app[ANALYSIS])
        await indexer.start()
        knowledge = KnowledgeSearch(store, None if semantic is None else SemanticSearch(store, semantic, usage=usage,
                                                                                       clock=clock))
        asker = ModelAsker(app[CLIENTS], usage, clock, upstreams)
        limits = settings.security.egress
        fetcher = RemoteFetcher(app[EGRESS], max_bytes=limits.source_max_bytes, cache_bytes=limits.source_cache_bytes)
        mcp = McpPool(app[EGRESS], settings.tools)
        nonces = RequestNonces(account_cache.get)
        mcp_extension = McpExtension(mcp, nonces, trust_of=account_cache.trust, limits=McpLimits(
            text_chars=settings.tools.tool_output_max_chars, image_bytes=settings.tools.mcp_image_max_bytes))
        pipeline_services = PipelineServices(
            clients=app[CLIENTS], fetcher=fetcher, egress=app[EGRESS], upstreams=upstreams, meter=meter,
            counters=TokenCounters(), usage=usage, settings=settings.llm, egress_settings=limits, clock=clock,
            metrics=recorder, extensions=[
                MemoryExtension(memory),
                BashExtension(app[SHELL], app[WORKSPACES], app[SANDBOX], Delivery(
                    settings.server.base_url, settings.security.egress.tool_media_max_bytes, clock)),
                SkillsExtension(store, fetcher, trust_of=account_cache.trust,
                                timeout=settings.llm.context_location_timeout_seconds),
                mcp_extension,
            ],
            stages=[RetrievalStage(store, knowledge, QueryWriter(asker))], guard=guard,
            hook=WorkerHook(app[EGRESS], nonces, mcp_extension, settings.tools, trust_of=account_cache.trust,
                            clock=clock, tool_timeout=settings.llm.tool_call_timeout_seconds,
                            tool_caps=ResponseCaps(text=limits.tool_response_max_bytes,
                                                    media=limits.tool_media_max_bytes)),
            router=ComplexityRouter(app[CLIENTS], settings.governance, meter=meter, usage=usage, metrics=recorder,
                                    clock=clock),
            budget=UsageBudget(store, account_cache, clock, settings.batch.prices, metrics=recorder),
            screen=Moderator(app[CLIENTS], settings.governance, metrics=recorder),
        )
        pipeline = TurnPipeline(pipeline_services)
        limiter = RateLimiter(store, clock)
        sessions = SessionService(store, clock)
        await sessions.start_purging()
        await memory.start_purging()
        gateway_cache = GatewayCache(store, ttl=settings.llm.gateway_cache_seconds)
        await gateway_cache.start()
        prompt_limits = PromptLimits(max_pending=settings.webchat.max_pending_prompts,
                                     max_parts=settings.webchat.max_prompt_parts)
        kept_files = AnswerFiles(store, clock, session_bytes=settings.webchat.media_session_bytes)
        chat = ChatEngine(store, pipeline, sessions, limiter, clock, gateways=gateway_cache, metrics=recorder,
                          limits=prompt_limits, files=kept_files)
        await chat.start()
        transcriber = Transcriber(store, app[CLIENTS], model=settings.webchat.transcription_model,
                                  upstreams=upstreams)
        speech = Synthesizer(store, app[CLIENTS], settings.speech, upstreams=upstreams, usage=usage,
                             metrics=recorder, clock=clock)
        adapters = channel_adapters(settings, app[EGRESS])
        notifier = HandoffNotifier(app[EGRESS], account_cache, adapters, public_url=settings.server.base_url)
        handoff = HandoffService(store, chat, clock, notifier, ProviderOwners(adapters, account_cache))
        inbound = InboundEngine(store, chat, sessions, adapters, clock, accounts=account_cache,
                                transcriber=transcriber, documents=app[DOCUMENTS], voice=VoiceReplies(speech),
                                max_upload_bytes=settings.webchat.max_upload_bytes,
                                metrics=recorder, handoff=handoff,
                                max_concurrent_turns=settings.channels.max_concurrent_turns)
        channels = ChannelHub(store, adapters, inbound, public_url=settings.server.base_url,
                              telegram_mode=settings.providers.telegram.mode)
        activator = ScheduleActivator(store, chat, sessions, inbound, adapters, clock, settings.scheduler,
                                      metrics=recorder, limiter=limiter)
        scheduler = Scheduler(store, activator, clock, settings.scheduler, accounts=account_cache)
        client_cache = ChatClientCache(store, ttl=settings.webchat.client_cache_seconds)
        await client_cache.start()
        pipeline_services.extensions.extend([
            ScheduleExtension(store, scheduler, clock, settings.scheduler, clients=client_cache),
            HandoffExtension(store, handoff, client_cache),
        ])
        processor = ItemProcessor(pipeline, gateway_cache.find, clock, settings.batch)
        batch = BatchRunner(store, processor, account_cache, clock, settings.batch, recorder)
        app[SERVICES] = Services(
            settings=settings, store=store, clock=clock, pipeline=pipeline, clients=app[CLIENTS], usage=usage,
            authenticator=authenticator, limiter=limiter, sessions=sessions, chat=chat, transcriber=transcriber,
            inbound=inbound, channels=channels, scheduler=scheduler, gateways=gateway_cache, metrics=recorder,
            chat_clients=client_cache, accounts=account_cache, documents=app[DOCUMENTS], speech=speech,
            answer_files=kept_files, files=app[FILES], handoff=handoff, batch=batch, knowledge=knowledge,
            indexer=indexer, asker=asker,
            connections=connection_cache, upstreams=upstreams, meter=meter, policies=policy_cache,
            shell=app[SHELL], sandbox=app[SANDBOX],
        )
        await inbound.resume()
        await scheduler.start()
        await batch.start()
        hooks = asyncio.create_task(channels.connect_all(), name="update-hooks")
        yield
        hooks.cancel()
        await drain_turns(app)  # again: a request that came in while aiohttp waited may have started one
        await channels.close()
        await notifier.close()
        await alerts.close()
        for adapter in adapters.values():
            await adapter.close()
        await memory.close()
        await speech.close()
        await indexer.close()
        await semantic_setup.close(semantic)
        await mcp.close()
        await sessions.close()
        await authenticator.close()
        await usage.close()
        await meter.close()
        await startup.close()

    app.cleanup_ctx.extend([store_context, egress_context, parsing_context, shell_context, services_context,
                            mcp_inference.serving(settings.server.max_body_bytes)])
    app.on_shutdown.append(drain_turns)
    route_modules = (
        health, accounts, admin, gateways, llm_connections, policies, openai_compat, chat_clients, integrations,
        public_chat, answer_files, chat_page, webhooks, hook_schedules, memories, batch_workflows, batch_items,
        collections, documents, files, rag, skills, metrics, handoff_routes, shell, mcp_inference, openapi,
    )
    for module in route_modules:
        app.router.add_routes(module.routes)
    return app
