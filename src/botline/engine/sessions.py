"""Web-chat sessions: create-or-renew by tag, sliding expiry, access-key lookup, background purge."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from botline.domain.chat_clients import ChatClient
from botline.domain.clock import Clock
from botline.domain.conversations import Session
from botline.periodic import Periodic
from botline.store.base import Store
from botline.store.changes import SessionContext

log = logging.getLogger(__name__)

ACCESS_KEY_PREFIX = "wk_"
ACCESS_KEY_BYTES = 24
"""token_urlsafe(24): 192 bits of randomness."""
SLIDING_RENEWAL = timedelta(minutes=30)
PURGE_INTERVAL_SECONDS = 60.0


def new_access_key() -> str:
    return ACCESS_KEY_PREFIX + secrets.token_urlsafe(ACCESS_KEY_BYTES)


class SessionService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._purger = Periodic("session-purge", PURGE_INTERVAL_SECONDS, self.purge_once)

    async def open(
        self, client: ChatClient, *, lifetime: timedelta, tag: str | None, extra_context: str | None,
        context_location: str | None, metadata: dict[str, str],
    ) -> Session:
        """A tag with a live session returns that session, renewed and with its context updated
        (in place: a turn storing its messages meanwhile keeps its counts)."""
        now = self._clock.now()
        if tag:
            existing = await self._store.sessions.get_by_tag(client.account_id, client.id, tag)
            if existing is not None and existing.is_live(now):
                renewed = await self._store.sessions.renew(
                    client.account_id, existing.id, expires_at=now + lifetime,
                    context=SessionContext(extra_context, context_location, metadata))
                if renewed is not None:
                    return renewed
        session = Session(
            account_id=client.account_id, chat_client_id=client.id, access_key=new_access_key(), tag=tag or None,
            extra_context=extra_context, context_location=context_location, metadata=metadata, created_at=now,
            expires_at=now + lifetime,
        )
        await self._store.sessions.create(session)
        return session

    async def for_channel(self, client: ChatClient, *, tag: str, lifetime: timedelta) -> Session:
        """The chat's live session, its expiry slid to `lifetime` from now; a new one once it expired."""
        now = self._clock.now()
        existing = await self._store.sessions.get_by_tag(client.account_id, client.id, tag)
        if existing is not None and existing.is_live(now):
            renewed = await self._store.sessions.renew(client.account_id, existing.id, expires_at=now + lifetime,
                                                       extend_only=True)
            if renewed is not None:
                return renewed
        session = Session(
            account_id=client.account_id, chat_client_id=client.id, access_key=new_access_key(), tag=tag,
            created_at=now, expires_at=now + lifetime,
        )
        await self._store.sessions.create(session)
        return session

    async def live_by_access_key(self, access_key: str) -> Session | None:
        session = await self._store.sessions.get_by_access_key(access_key)
        if session is None or not session.is_live(self._clock.now()):
            return None
        return session

    def renewal_floor(self) -> datetime:
        """A user message on a session about to expire keeps it open 30 more minutes: its expiry
        becomes at least this."""
        return self._clock.now() + SLIDING_RENEWAL

    async def start_purging(self) -> None:
        self._purger.start()

    async def close(self) -> None:
        await self._purger.close()

    async def purge_once(self) -> int:
        """Deletes expired sessions (their messages and answer files with them), then expired shared blobs
        (the audio cache; Redis expires those itself). Returns how many sessions went."""
        removed = 0
        while batch := await self._store.sessions.delete_expired(self._clock.now()):
            removed += batch
        if removed:
            log.info("purged %d expired sessions", removed)
        while await self._store.blobs.purge(self._clock.now()):
            pass
        return removed
