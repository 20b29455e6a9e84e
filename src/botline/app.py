"""Builds the aiohttp Application: one cleanup context per resource, unwound in reverse order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from botline.accounts import admin_account, bootstrap_admin_keys
from botline.api import (
    accounts,
    admin,
    chat_clients,
    chat_page,
    gateways,
    health,
    hook_schedules,
    integrations,
    memories,
    openai_compat,
    public_chat,
    webhooks,
)
from botline.api.auth import Authenticator, auth_middleware
from botline.api.cors import add_cors_headers, cors_preflight
from botline.api.errors import add_request_id, error_middleware, error_response
from botline.api.state import SERVICES, Services
from botline.channels.registry import channel_adapters
from botline.config import Settings
from botline.domain.clock import Clock, SystemClock
from botline.engine.channels import ChannelHub
from botline.engine.chat import ChatEngine
from botline.engine.client_cache import ChatClientCache
from botline.engine.inbound import InboundEngine
from botline.engine.sessions import SessionService
from botline.gateway.accounting import UsageRecorder
from botline.gateway.llm import ClientPool
from botline.gateway.pipeline import PipelineServices, TurnPipeline
from botline.gateway.registry import GatewayCache, apply_declared
from botline.gateway.remote import RemoteFetcher
from botline.gateway.tokens import TokenCounters
from botline.gateway.transcription import Transcriber
from botline.memory import MemoryExtension, MemoryService
from botline.ratelimit import RateLimiter
from botline.scheduler.activation import ScheduleActivator
from botline.scheduler.service import Scheduler
from botline.scheduler.tools import ScheduleExtension
from botline.store import open_store
from botline.store.base import Store

log = logging.getLogger(__name__)

STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CLIENTS = web.AppKey("clients", ClientPool)

AdminKeyAnnouncer = Callable[[str], None]


def build_app(
    settings: Settings, *, clock: Clock | None = None, announce_admin_key: AdminKeyAnnouncer | None = None
) -> web.Application:
    """The whole server. `announce_admin_key` receives a freshly created bootstrap key (shown once)."""
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            error_middleware, cors_preflight, auth_middleware(lambda a: a[SERVICES].authenticator, error_response)
        ],
    )
    app.on_response_prepare.extend([add_request_id, add_cors_headers])
    clock = clock or SystemClock()

    async def store_context(app: web.Application) -> AsyncIterator[None]:
        async with await open_store(
            settings.storage.url, redis_prefix=settings.storage.redis_prefix,
            redis_max_connections=settings.storage.redis_max_connections,
        ) as store:
            app[STORE] = store
            yield

    async def http_context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            app[HTTP] = http
            yield

    async def clients_context(app: web.Application) -> AsyncIterator[None]:
        app[CLIENTS] = ClientPool(settings.llm)
        yield
        await app[CLIENTS].close()

    async def services_context(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE]
        new_key = await bootstrap_admin_keys(store, [k.get_secret_value() for k in settings.auth.admin_keys])
        if new_key and announce_admin_key:
            announce_admin_key(new_key)
        if settings.gateways:
            await apply_declared(store, (await admin_account(store)).id, settings.gateways, clock)
        usage = UsageRecorder(store.usage)
        await usage.start()
        authenticator = Authenticator(store, clock, cache_seconds=settings.auth.key_cache_seconds)
        memory = MemoryService(store, clock)
        pipeline_services = PipelineServices(
            clients=app[CLIENTS], fetcher=RemoteFetcher(app[HTTP]), http=app[HTTP], counters=TokenCounters(),
            usage=usage, settings=settings.llm, clock=clock, extensions=[MemoryExtension(memory)],
        )
        pipeline = TurnPipeline(pipeline_services)
        limiter = RateLimiter(store, clock)
        sessions = SessionService(store, clock)
        await sessions.start_purging()
        await memory.start_purging()
        gateway_cache = GatewayCache(store, ttl=settings.llm.gateway_cache_seconds)
        chat = ChatEngine(store, pipeline, sessions, limiter, clock, gateways=gateway_cache)
        transcriber = Transcriber(store, app[CLIENTS], model=settings.webchat.transcription_model)
        adapters = channel_adapters(settings, app[HTTP])
        inbound = InboundEngine(store, chat, sessions, adapters, clock, transcriber=transcriber,
                                max_upload_bytes=settings.webchat.max_upload_bytes,
                                max_concurrent_turns=settings.channels.max_concurrent_turns)
        channels = ChannelHub(store, adapters, inbound, public_url=settings.server.base_url,
                              telegram_mode=settings.providers.telegram.mode)
        activator = ScheduleActivator(store, chat, sessions, inbound, adapters, clock, settings.scheduler)
        scheduler = Scheduler(store, activator, clock, settings.scheduler,
                              grace_seconds=settings.server.shutdown_grace_seconds)
        client_cache = ChatClientCache(store, ttl=settings.webchat.client_cache_seconds)
        pipeline_services.extensions.append(
            ScheduleExtension(store, scheduler, clock, settings.scheduler, clients=client_cache))
        app[SERVICES] = Services(
            settings=settings, store=store, clock=clock, pipeline=pipeline, clients=app[CLIENTS], usage=usage,
            authenticator=authenticator, limiter=limiter, sessions=sessions, chat=chat, transcriber=transcriber,
            inbound=inbound, channels=channels, scheduler=scheduler, gateways=gateway_cache,
            chat_clients=client_cache,
        )
        await inbound.resume()
        await scheduler.start()
        hooks = asyncio.create_task(channels.connect_all(), name="update-hooks")
        yield
        hooks.cancel()
        await scheduler.close()
        await channels.close()
        await inbound.close(settings.server.shutdown_grace_seconds)
        for adapter in adapters.values():
            await adapter.close()
        await chat.close()
        await memory.close()
        await sessions.close()
        await authenticator.close()
        await usage.close()

    app.cleanup_ctx.extend([store_context, http_context, clients_context, services_context])
    route_modules = (
        health, accounts, admin, gateways, openai_compat, chat_clients, integrations, public_chat, chat_page, webhooks,
        hook_schedules, memories,
    )
    for module in route_modules:
        app.router.add_routes(module.routes)
    return app
