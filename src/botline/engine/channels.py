"""Keeps each chat client's messaging integrations connected: webhook registration (on save and at
start), Telegram long polling when botline has no public URL, and webhook URLs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.chat_clients import ChatClient
from botline.domain.integrations import IntegrationType, TelegramIntegration, webhook_token
from botline.egress import Trust
from botline.engine.inbound import Adapters, InboundEngine
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
POLL_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Registration:
    """What saving an integration did at the provider."""

    mode: str
    """"webhook" (registered with the provider), "polling" (Telegram without a public URL) or
    "manual" (the provider has no registration API: paste webhookUrl into its panel)."""
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"mode": self.mode, "error": self.error}


class ChannelHub:
    def __init__(
        self, store: Store, adapters: Adapters, inbound: InboundEngine, *, public_url: str, telegram_mode: str = "auto"
    ) -> None:
        self._store = store
        self._telegram_mode = telegram_mode
        self._adapters = adapters
        self._inbound = inbound
        self._public_url = public_url.rstrip("/")
        self._pollers: dict[tuple[str, IntegrationType], asyncio.Task[None]] = {}

    @property
    def telegram_polls(self) -> bool:
        if self._telegram_mode != "auto":
            return self._telegram_mode == "polling"
        return (urlparse(self._public_url).hostname or "") in LOCAL_HOSTS

    def adapter(self, kind: IntegrationType) -> ChannelAdapter[Any]:
        return self._adapters[kind]

    async def webhook_url(self, client: ChatClient, kind: IntegrationType) -> str:
        account = await self._store.accounts.get(client.account_id)
        salt = account.salt if account else ""
        token = webhook_token(salt, client.id, kind)
        return f"{self._public_url}/api/v1/webhooks/{kind.value}/{client.id}/{token}"

    async def connect(self, client: ChatClient, kind: IntegrationType) -> Registration:
        """Registers the webhook (or starts polling); failures are reported, never swallowed."""
        integration = client.integrations.of(kind)
        if integration is None:
            return Registration(mode="none")
        self._stop_polling(client.id, kind)
        if isinstance(integration, TelegramIntegration) and self.telegram_polls:
            self._start_polling(client, integration)
            return Registration(mode="polling")
        adapter = self._adapters[kind]
        if not adapter.can_register_webhook:
            return Registration(mode="manual")
        account = await self._store.accounts.get(client.account_id)
        trust = Trust.of(account is not None and account.is_admin)
        try:
            await adapter.register_webhook(integration, await self.webhook_url(client, kind), trust=trust)
        except DeliveryError as exc:
            log.warning("webhook registration for %s %s failed: %s", kind.value, client.id, exc.message)
            return Registration(mode="webhook", error=exc.message)
        return Registration(mode="webhook")

    async def disconnect(self, client: ChatClient, kind: IntegrationType) -> None:
        self._stop_polling(client.id, kind)

    async def connect_all(self) -> None:
        """At start ("update hooks"): every integration of every account, again."""
        for account in await self._store.accounts.list():
            for client in await self._store.chat_clients.list_for_account(account.id):
                for kind, _ in client.integrations.configured():
                    registration = await self.connect(client, kind)
                    if registration.error:
                        log.warning("integration %s of %s not connected: %s", kind.value, client.id,
                                    registration.error)

    async def close(self) -> None:
        tasks = list(self._pollers.values())
        for key in list(self._pollers):
            self._stop_polling(*key)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start_polling(self, client: ChatClient, integration: TelegramIntegration) -> None:
        key = (client.id, IntegrationType.TELEGRAM)
        self._pollers[key] = asyncio.create_task(self._poll(client.id, client.account_id), name=f"poll:{client.id}")

    def _stop_polling(self, client_id: str, kind: IntegrationType) -> None:
        task = self._pollers.pop((client_id, kind), None)
        if task is not None:
            task.cancel()

    async def _poll(self, client_id: str, account_id: str) -> None:
        """Long polling: each update is recorded before the next getUpdates confirms it, so none is lost."""
        adapter = self._adapters[IntegrationType.TELEGRAM]
        offset: int | None = None
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                client = await self._store.chat_clients.get(account_id, client_id)
                integration = client.integrations.telegram_integration if client else None
                if client is None or integration is None:
                    return
                try:
                    updates = await adapter.fetch_updates(integration, offset)
                except (DeliveryError, StoreError) as exc:
                    log.warning("telegram polling for %s failed (%s); retrying", client_id, exc)
                    await asyncio.sleep(POLL_RETRY_SECONDS)
                    continue
                except Exception:  # e.g. an error while dropping an old webhook: keep polling
                    log.exception("telegram polling for %s failed; retrying", client_id)
                    await asyncio.sleep(POLL_RETRY_SECONDS)
                    continue
                for update in updates:
                    try:
                        parsed = adapter.parse(integration, update)
                        await self._inbound.accept(client, IntegrationType.TELEGRAM, parsed.messages)
                    except StoreError as exc:  # not confirmed: fetched again on the next poll
                        log.warning("telegram update not recorded yet (%s); retrying", exc)
                        await asyncio.sleep(POLL_RETRY_SECONDS)
                        break
                    except Exception:  # an update we cannot read is logged and skipped, never retried forever
                        log.exception("telegram update %s of %s skipped", update.get("update_id"), client_id)
                    offset = int(update["update_id"]) + 1
