"""What route handlers reach through `request.app[SERVICES]`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from botline.account_cache import AccountCache
from botline.api.auth import PRINCIPAL, Authenticator, Principal
from botline.batch.runner import BatchRunner
from botline.config import Settings
from botline.domain.clock import Clock
from botline.engine.answer_files import AnswerFiles
from botline.engine.channels import ChannelHub
from botline.engine.chat import ChatEngine
from botline.engine.client_cache import ChatClientCache
from botline.engine.handoff import HandoffService
from botline.engine.inbound import InboundEngine
from botline.engine.sessions import SessionService
from botline.gateway.accounting import UsageRecorder
from botline.gateway.connection_meter import ConnectionMeter
from botline.gateway.connections import ConnectionCache, Upstreams
from botline.gateway.llm import ClientPool
from botline.gateway.pipeline import TurnPipeline
from botline.gateway.registry import GatewayCache
from botline.gateway.transcription import Transcriber
from botline.governance import PolicyCache
from botline.knowledge.asking import ModelAsker
from botline.knowledge.indexer import Indexer
from botline.knowledge.search import KnowledgeSearch
from botline.metrics import Metrics
from botline.parsing import PdfExtractor
from botline.parsing.files import FileSplitter
from botline.ratelimit import RateLimiter
from botline.scheduler.service import Scheduler
from botline.shell.files import ShellFiles
from botline.shell.sandbox import Sandbox
from botline.speech import Synthesizer
from botline.store.base import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    clock: Clock
    pipeline: TurnPipeline
    clients: ClientPool
    usage: UsageRecorder
    authenticator: Authenticator
    limiter: RateLimiter
    sessions: SessionService
    chat: ChatEngine
    transcriber: Transcriber
    inbound: InboundEngine
    channels: ChannelHub
    scheduler: Scheduler
    gateways: GatewayCache
    metrics: Metrics
    chat_clients: ChatClientCache
    accounts: AccountCache
    documents: PdfExtractor
    files: FileSplitter
    speech: Synthesizer
    answer_files: AnswerFiles
    handoff: HandoffService
    batch: BatchRunner
    knowledge: KnowledgeSearch
    indexer: Indexer
    asker: ModelAsker
    connections: ConnectionCache
    upstreams: Upstreams
    meter: ConnectionMeter
    policies: PolicyCache
    shell: ShellFiles
    sandbox: Sandbox


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
