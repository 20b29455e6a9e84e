"""The channel adapters this server runs, built from the providers settings."""

from __future__ import annotations

from typing import Any

import aiohttp

from botline.channels.base import ChannelAdapter
from botline.channels.evolution import EvolutionAdapter
from botline.channels.kapso import KapsoAdapter
from botline.channels.telegram import TelegramAdapter
from botline.channels.zapi import ZapiAdapter
from botline.config import Settings
from botline.domain.integrations import IntegrationType


def channel_adapters(settings: Settings, http: aiohttp.ClientSession) -> dict[IntegrationType, ChannelAdapter[Any]]:
    return {
        IntegrationType.TELEGRAM: TelegramAdapter(settings.providers.telegram.api_url),
        IntegrationType.ZAPI: ZapiAdapter(http, settings.providers.zapi.api_url),
        IntegrationType.EVOLUTION: EvolutionAdapter(http),
        IntegrationType.KAPSO: KapsoAdapter(http, settings.providers.kapso.api_url),
    }
