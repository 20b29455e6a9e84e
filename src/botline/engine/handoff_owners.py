"""Providers with their own notion of who answers a chat (Chatwoot's conversation status): botline's
handoffs are told to them, so a chat a person took is in their agents' queue (docs/handoff.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from botline.account_cache import AccountCache
from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Session
from botline.domain.handoff import Controller
from botline.domain.inbound import ChatKey
from botline.domain.integrations import IntegrationType

log = logging.getLogger(__name__)


def channel_of(session: Session, client: ChatClient) -> ChatKey | None:
    """A channel session's chat (its tag is "{integration}:{chat id}"); None for a web-chat session."""
    kind, _, chat_id = (session.tag or "").partition(":")
    try:
        integration = IntegrationType(kind)
    except ValueError:
        return None
    if not chat_id or client.integrations.of(integration) is None:
        return None
    return ChatKey(client.account_id, client.id, integration, chat_id)


class ProviderOwners:
    def __init__(self, adapters: Mapping[IntegrationType, ChannelAdapter[Any]], accounts: AccountCache) -> None:
        self._adapters = adapters
        self._accounts = accounts

    async def tell(self, session: Session, client: ChatClient, owner: Controller) -> None:
        """Best effort: a provider that cannot be told is logged; botline's own state holds anyway."""
        chat = channel_of(session, client)
        if chat is None:
            return
        integration = client.integrations.of(chat.integration)
        adapter = self._adapters.get(chat.integration)
        if integration is None or adapter is None:
            return
        try:
            await adapter.set_owner(integration, chat.chat_id, owner,
                                    trust=await self._accounts.trust(client.account_id))
        except DeliveryError as exc:
            log.warning("%s not told that %s answers %s: %s", chat.integration.value, owner.value, chat.text(),
                        exc.message)
