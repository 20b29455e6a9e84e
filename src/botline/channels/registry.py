"""The channel adapters this server runs, built from the providers settings."""

from __future__ import annotations

from typing import Any

from botline.channels.base import ChannelAdapter
from botline.channels.chatwoot import ChatwootAdapter
from botline.channels.evolution import EvolutionAdapter
from botline.channels.kapso import KapsoAdapter
from botline.channels.provider_http import ProviderHttp
from botline.channels.telegram import TelegramAdapter
from botline.channels.zapi import ZapiAdapter
from botline.config import Settings
from botline.domain.integrations import IntegrationType
from botline.egress import Egress


def channel_adapters(settings: Settings, egress: Egress) -> dict[IntegrationType, ChannelAdapter[Any]]:
    limits = settings.security.egress
    http = ProviderHttp(egress, max_reply_bytes=limits.provider_response_max_bytes,
                        max_media_bytes=limits.media_max_bytes)
    return {
        IntegrationType.TELEGRAM: TelegramAdapter(settings.providers.telegram.api_url),
        IntegrationType.ZAPI: ZapiAdapter(http, settings.providers.zapi.api_url),
        IntegrationType.EVOLUTION: EvolutionAdapter(http),
        IntegrationType.KAPSO: KapsoAdapter(http, settings.providers.kapso.api_url),
        IntegrationType.CHATWOOT: ChatwootAdapter(http),
    }
