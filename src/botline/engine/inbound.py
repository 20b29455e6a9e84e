"""The durable inbound pipeline every messaging channel shares.

record (idempotent on the provider's message id) -> acknowledge -> per-chat worker: debounce ->
lease -> one turn for everything pending -> deliver -> mark answered. Anything recorded and not
answered is resumed at start, so a crash never drops a message; a re-delivered webhook is recorded
once, so it is never answered twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from botline.account_cache import AccountCache
from botline.channels.base import ChannelAdapter, DeliveryError, InboundMessage
from botline.domain.chat_clients import ChatClient, ClientParameters
from botline.domain.clock import Clock
from botline.domain.conversations import Role, Session
from botline.domain.inbound import ChatKey, InboundRecord, MediaKind, MediaRef
from botline.domain.integrations import DEFAULT_SESSION_DURATION, Integration, IntegrationType
from botline.egress import Trust
from botline.engine.attachments import AttachmentError, Content, reader_for
from botline.engine.chat import ActiveTurn, ChatEngine, ChatRefused, TurnOutcome
from botline.engine.delivery import send_with_retries, split_message
from botline.engine.handoff import HandoffService
from botline.engine.locks import Lease, LeaseLost, SessionLocks
from botline.engine.media_out import send_media
from botline.engine.sessions import SessionService
from botline.engine.voice import VoiceReplies
from botline.gateway.caller import CallSource
from botline.gateway.errors import GatewayError
from botline.gateway.transcription import Transcriber
from botline.logs import bind_turn
from botline.media import OutboundMedia
from botline.metrics import Metrics
from botline.parsing import PdfExtractor
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)

DEDUPE_SECONDS = 48 * 3600
"""Provider re-deliveries (Telegram, Meta) stop well within a day; keys are kept two."""
TYPING_REFRESH_SECONDS = 4.0
STORE_RETRY_SECONDS = 2.0
UNAVAILABLE_REPLY = "Sorry, I can't answer right now. Please try again in a moment."
RESET_COMMAND = "/reset"
USAGE_COMMAND = "/usage"
RESET_REPLY = "Done: this conversation was cleared."

CALL_SOURCES = {
    IntegrationType.TELEGRAM: CallSource.TELEGRAM,
    IntegrationType.ZAPI: CallSource.ZAPI,
    IntegrationType.EVOLUTION: CallSource.EVOLUTION,
    IntegrationType.KAPSO: CallSource.KAPSO,
    IntegrationType.CHATWOOT: CallSource.CHATWOOT,
}
Adapters = Mapping[IntegrationType, ChannelAdapter[Any]]


class InboundEngine:
    def __init__(
        self, store: Store, chat: ChatEngine, sessions: SessionService, adapters: Adapters, clock: Clock, *,
        accounts: AccountCache, transcriber: Transcriber, documents: PdfExtractor, max_upload_bytes: int,
        metrics: Metrics, voice: VoiceReplies, handoff: HandoffService,
        max_concurrent_turns: int = 8,
    ) -> None:
        self._handoff = handoff
        self._accounts = accounts
        self._voice = voice
        self._metrics = metrics
        self._turn_slots = asyncio.Semaphore(max_concurrent_turns)
        self._store = store
        self._chat = chat
        self._sessions = sessions
        self._adapters = adapters
        self._clock = clock
        self._transcriber = transcriber
        self._documents = documents
        self._max_upload_bytes = max_upload_bytes
        self._locks = SessionLocks(store.locks)
        self._workers: dict[ChatKey, asyncio.Task[None]] = {}
        self._wake: dict[ChatKey, asyncio.Event] = {}
        self._retries: dict[ChatKey, asyncio.TimerHandle] = {}
        self._closing = False
        """Set by close(): no new worker or turn starts; what is recorded stays pending for the next start."""

    async def accept(self, client: ChatClient, kind: IntegrationType, messages: list[InboundMessage]) -> int:
        """Records new messages (re-deliveries are dropped here) and wakes their chats' workers.

        For a disabled account nothing is recorded (0): the provider's delivery is acknowledged and
        its messages dropped, so re-enabling never answers them by surprise (docs/faults.md).
        """
        if messages and await self._accounts.active(client.account_id) is None:
            log.info("dropping %d %s messages for %s: its account is disabled", len(messages), kind.value, client.id)
            return 0
        recorded = 0
        for message in messages:
            record = InboundRecord(
                account_id=client.account_id, chat_client_id=client.id, integration=kind, chat_id=message.chat_id,
                provider_message_id=message.provider_message_id, sender_name=message.sender_name,
                text=message.text, media=list(message.media), received_at=self._clock.now(),
                voice=message.voice or any(m.kind is MediaKind.AUDIO for m in message.media),
                operator=message.operator, owner=message.owner,
            )
            # Shielded: a provider that hangs up mid-write must not leave a half-done record behind.
            if await asyncio.shield(self._store.inbound.record(record, dedupe_seconds=DEDUPE_SECONDS)):
                recorded += 1
            else:
                self._metrics.duplicates(CALL_SOURCES[kind].channel).inc()
            # A re-delivery kicks too: if the first delivery's request was cut off after recording,
            # this is what makes sure its message is answered.
            self.kick(record.chat)
        return recorded

    def kick(self, chat: ChatKey) -> None:
        """Makes sure a worker will look at the chat's pending messages."""
        if self._closing:
            return
        self._wake.setdefault(chat, asyncio.Event()).set()
        if chat not in self._workers:
            self._workers[chat] = asyncio.create_task(self._work(chat), name=f"inbound:{chat.text()}")

    async def resume(self, *, account_id: str | None = None) -> int:
        """Starts workers for every chat left with unanswered messages (after a restart or a crash),
        or only for one account's chats (after it was re-enabled)."""
        chats = [chat for chat in await self._store.inbound.pending_chats()
                 if account_id is None or chat.account_id == account_id]
        for chat in chats:
            self.kick(chat)
        return len(chats)

    async def close(self, grace_seconds: float) -> None:
        """Lets running turns finish for up to `grace_seconds` and starts no new one; what is left
        stays pending for the next start (or another replica)."""
        self._closing = True
        for timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        workers = list(self._workers.values())
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._locks.close()

    async def _work(self, chat: ChatKey) -> None:
        channel = CALL_SOURCES[chat.integration].channel
        bind_turn(channel)  # this task's log lines; the session is added once known
        wake = self._wake[chat]
        try:
            while not self._closing:
                wake.clear()
                records = await self._store.inbound.pending(chat)
                if not records:
                    if wake.is_set():
                        continue
                    return  # no await between the check and the exit: a kick cannot slip in between
                if await self._accounts.active(chat.account_id) is None:
                    # Disabled: the messages stay pending, and re-enabling the account resumes them.
                    log.info("%d messages of %s wait: its account is disabled", len(records), chat.text())
                    return
                client = await self._store.chat_clients.get(chat.account_id, chat.chat_client_id)
                integration = client.integrations.of(chat.integration) if client else None
                if client is None or integration is None:
                    log.warning("dropping %d messages for %s: client or integration removed", len(records), chat.text())
                    await self._store.inbound.complete(chat, [r.id for r in records])
                    continue
                wait = self._debounce_left(client.client_parameters, records[-1])
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=wait)
                    continue
                async with self._turn_slots, self._locks.hold(f"chat:{chat.text()}") as lease:
                    if self._closing:  # waited for a slot or the lease while draining: left pending
                        return
                    records = await self._store.inbound.pending(chat)  # another replica may have answered
                    if records and await self._accounts.active(chat.account_id) is not None:
                        voice_after = await self._answer(chat, client, integration, records, lease)
                        self._metrics.merged(channel).inc(len(records) - 1)  # once answered, not per try
                        await self._mark_answered(chat, [r.id for r in records])
                        if voice_after is not None:  # the text is out and recorded: a crash now loses only this
                            await voice_after()
        except LeaseLost as exc:
            # The lease lapsed in a Store outage and another replica took the chat: it answers these
            # messages; this worker looks again later in case that replica goes away.
            log.warning("not answering %s: %s", chat.text(), exc)
            self._retry_later(chat)
        except StoreError as exc:
            # The store is down or saturated: try again shortly rather than leave the chat unanswered
            # until its next message or a restart.
            log.warning("inbound worker for %s paused (%s); retrying", chat.text(), exc)
            self._retry_later(chat)
        except Exception:  # a bug must not silently end the chat's worker: log it; the messages stay pending
            log.exception("inbound worker for %s failed; resumed on the next message or start", chat.text())
        finally:
            self._workers.pop(chat, None)
            self._wake.pop(chat, None)

    async def _mark_answered(self, chat: ChatKey, record_ids: list[str]) -> None:
        """The reply is out: retried in place while the Store is away, because running the whole
        answer again later would send the reply a second time. Ends only with the worker, at the
        shutdown deadline: then the reply is sent again after the restart (docs/faults.md)."""
        while True:
            try:
                await self._store.inbound.complete(chat, record_ids)
                return
            except StoreError as exc:
                log.warning("reply to %s sent; marking it answered failed (%s), retrying", chat.text(), exc)
                await asyncio.sleep(STORE_RETRY_SECONDS)

    def _retry_later(self, chat: ChatKey) -> None:
        if self._closing:
            return
        if (timer := self._retries.pop(chat, None)) is not None:
            timer.cancel()
        self._retries[chat] = asyncio.get_running_loop().call_later(STORE_RETRY_SECONDS, self._retry_now, chat)

    def _retry_now(self, chat: ChatKey) -> None:
        del self._retries[chat]
        self.kick(chat)

    def _debounce_left(self, params: ClientParameters, newest: InboundRecord) -> float:
        interval = params.message_debounce_interval
        if not interval or newest.operator:  # a person took the chat: nothing to wait for
            return 0.0
        return (newest.received_at + interval - self._clock.now()).total_seconds()

    async def _answer(
        self, chat: ChatKey, client: ChatClient, integration: Integration, records: list[InboundRecord], lease: Lease
    ) -> Callable[[], Awaitable[object]] | None:
        """Sends the reply's text; returns the voice note still to send after it, if one is wanted."""
        reply, session, media = await self._reply(chat, client, integration, records)
        lease.check()  # lost meanwhile: the replica that took the chat answers, or this reply is sent twice
        adapter = self._adapters[chat.integration]
        trust = await self._accounts.trust(client.account_id)
        if not reply:  # a turn may answer with a file alone
            await self._send_media(chat, client, integration, media, session, trust)
            return None
        if session is None or not self._voice.wanted(client, records):
            await self.deliver(chat, client, integration, reply, session=session)
            await self._send_media(chat, client, integration, media, session, trust)
            return None

        async def voice() -> bool:
            return await self._voice.send(adapter, integration, chat.chat_id, client, reply, trust)

        if client.client_parameters.audio_synthesis_with_text:
            await self.deliver(chat, client, integration, reply, session=session)
            await self._send_media(chat, client, integration, media, session, trust)
            return voice
        if not await voice():  # voice only: the text goes when no voice note could
            await self.deliver(chat, client, integration, reply, session=session)
        await self._send_media(chat, client, integration, media, session, trust)
        return None

    async def _send_media(self, chat: ChatKey, client: ChatClient, integration: Integration,
                          media: list[OutboundMedia], session: Session | None, trust: Trust) -> None:
        """The turn's images and files, after its text; those that cannot go are named in a text notice."""
        if not media:
            return
        notices = await send_media(self._adapters[chat.integration], integration, chat.chat_id, media, trust)
        if notices:
            await self.deliver(chat, client, integration, "\n".join(notices), session=session)

    async def _reply(
        self, chat: ChatKey, client: ChatClient, integration: Integration, records: list[InboundRecord]
    ) -> tuple[str, Session | None, list[OutboundMedia]]:
        """What to send for the records, the session it belongs to (None after a reset) and the files
        tools made for the user."""
        adapter = self._adapters[chat.integration]
        command = records[-1].text.strip().lower() if len(records) == 1 and not records[-1].operator else ""
        if command == RESET_COMMAND:
            await self._reset(chat, client)
            return RESET_REPLY, None, []
        session = await self._sessions.for_channel(
            client, tag=chat.external_user_id, lifetime=integration.session_duration or DEFAULT_SESSION_DURATION
        )
        bind_turn(CALL_SOURCES[chat.integration].channel, session_id=session.id, gateway=client.ai_gateway_id)
        settled = await self._handoff.settle(session, client, records)  # the session read above holds the state
        if settled is not None and not settled.rest:
            return settled.reply, settled.session, []
        if settled is not None:  # "#bot" and then the user, in one batch: the bot answers the user's part
            session, records = settled.session, list(settled.rest)
        if command == USAGE_COMMAND and client.client_parameters.debug:
            usage = f"This conversation used {session.token_count} tokens in {session.message_count} messages."
            return usage, session, []
        trust = await self._accounts.trust(client.account_id)
        typing = asyncio.create_task(self._keep_typing(adapter, integration, chat.chat_id, trust))
        try:
            text, media = await self._turn(chat, client, session, integration, records)
            return text, session, media
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing

    async def _turn(
        self, chat: ChatKey, client: ChatClient, session: Session, integration: Integration,
        records: list[InboundRecord],
    ) -> tuple[str, list[OutboundMedia]]:
        adapter = self._adapters[chat.integration]
        reader = reader_for(client, self._transcriber, self._documents, max_upload_bytes=self._max_upload_bytes)
        if (stored := await self._stored_answer(session, records)) is not None:
            return stored, []  # answered before a restart, not delivered yet: send that, don't ask again
        try:
            content = await self._content(adapter, integration, records)
            turn = await self._chat.submit(session, client, content, reader, source=CALL_SOURCES[chat.integration],
                                           reply_to=[r.id for r in records])
            outcome = await self._outcome(turn)
        except (ChatRefused, AttachmentError) as exc:
            return exc.message, []
        except GatewayError as exc:
            log.warning("no answer for %s: %s", chat.text(), exc.message)
            return UNAVAILABLE_REPLY, []
        except DeliveryError as exc:  # an attachment could not be fetched from the provider
            log.warning("no answer for %s: %s", chat.text(), exc.message)
            return UNAVAILABLE_REPLY, []
        if outcome.handed_off or outcome.cancelled:  # a person took the chat meanwhile (or it was deleted):
            return "", []  # what was stored stays in the history; nothing half-written goes to the user
        text = outcome.message.content
        media = outcome.result.media if outcome.result is not None else []
        return (text if isinstance(text, str) else ""), media

    @staticmethod
    async def _outcome(turn: ActiveTurn) -> TurnOutcome:
        """Shielded from this worker's cancel only until the turn is abandoned: the worker is
        cancelled at the shutdown deadline and then releases the chat's lease, so the turn must end
        with it (another replica may take the chat and answer the same messages)."""
        try:
            return await asyncio.shield(turn.task)
        except asyncio.CancelledError:
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)
            raise

    async def _stored_answer(self, session: Session, records: list[InboundRecord]) -> str | None:
        messages = await self._store.messages.list(session.id)
        last = next((m for m in reversed(messages) if m.role is Role.ASSISTANT and not m.tool_calls), None)
        if last is not None and last.answers_inbound == [r.id for r in records] and isinstance(last.content, str):
            return last.content
        return None

    async def _content(
        self, adapter: ChannelAdapter[Any], integration: Integration, records: list[InboundRecord]
    ) -> Content:
        """Several debounced messages become one turn: texts joined by newlines, in order; media as parts."""
        text = "\n".join(r.text for r in records if r.text)
        parts: list[dict[str, Any]] = []
        for record in records:
            for media in record.media:
                blob = await adapter.fetch_media(integration, media)
                if blob is not None:
                    parts.append(_media_part(media, blob))
        if not parts:
            return text
        return ([{"type": "text", "text": text}] if text else []) + parts

    async def deliver(
        self, chat: ChatKey, client: ChatClient, integration: Integration, text: str, *, session: Session | None
    ) -> DeliveryError | None:
        """Sends an answer in the channel's chunks; a final failure is recorded on the session and returned."""
        adapter = self._adapters[chat.integration]
        chunks = split_message(
            text, limit=adapter.max_text_length,
            by_paragraph=client.client_parameters.split_answer_into_message_chunks, length=adapter.text_length,
        )
        provider = CALL_SOURCES[chat.integration].channel
        trust = await self._accounts.trust(client.account_id)
        try:
            for chunk in chunks:
                await send_with_retries(adapter, integration, chat.chat_id, chunk, trust=trust,
                                        on_retry=self._metrics.send_retries(provider).inc)
        except DeliveryError as exc:
            self._metrics.send_failures(provider).inc()
            log.error("reply to %s not delivered after retries: %s", chat.text(), exc.message)
            if session is not None:
                await self._store.sessions.record_delivery_error(session.account_id, session.id, exc.message)
            return exc
        return None

    async def _reset(self, chat: ChatKey, client: ChatClient) -> None:
        existing = await self._store.sessions.get_by_tag(client.account_id, client.id, chat.external_user_id)
        if existing is not None:
            await self._store.sessions.delete(client.account_id, existing.id)

    @staticmethod
    async def _keep_typing(adapter: ChannelAdapter[Any], integration: Integration, chat_id: str, trust: Trust) -> None:
        while True:
            with contextlib.suppress(DeliveryError):
                await adapter.typing(integration, chat_id, trust=trust)
            await asyncio.sleep(TYPING_REFRESH_SECONDS)


def _media_part(media: MediaRef, blob: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(blob).decode()
    mime = media.mime_type or "application/octet-stream"
    if media.kind is MediaKind.IMAGE:
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}"}}
    if media.kind is MediaKind.AUDIO:
        audio_format = (mime.split("/")[-1].split(";")[0] or "ogg").replace("mpeg", "mp3")
        return {"type": "input_audio", "input_audio": {"data": encoded, "format": audio_format}}
    data_url = f"data:{mime};base64,{encoded}"
    return {"type": "file", "file": {"filename": media.filename or "document", "file_data": data_url}}
