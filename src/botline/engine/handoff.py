"""Human handoff: a person takes a chat over, the bot steps aside, and gets it back (docs/handoff.md).

Every change of hands goes through `HandoffService`: the state is written in place on the session
(so every replica honours it at its next read of the session, which every turn makes anyway), turns
of that chat still running are stopped on whichever replica runs them, and the operators are told.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from botline.domain.chat_clients import ChatClient
from botline.domain.clock import Clock
from botline.domain.conversations import Message, Role, Session
from botline.domain.handoff import Controller, Handoff, HandoffTrigger, is_keyword
from botline.domain.inbound import ChatKey, InboundRecord
from botline.engine.attachments import Content
from botline.engine.chat import ChatEngine
from botline.engine.handoff_notify import HandoffEvent, HandoffEventKind, HandoffNotifier
from botline.engine.handoff_owners import ProviderOwners
from botline.store.base import Store

log = logging.getLogger(__name__)

OPERATOR = "operator"
"""The agent name of a message typed on the business phone (WhatsApp gives no name for it)."""
ASKED_BY_USER = "the user asked for a person"
TYPED_BY_OPERATOR = "a message was typed on the business's own number"
OPENED_AT_PROVIDER = "a person has the conversation in the provider's inbox"
UNTIL_RESUMED = object()
"""`until=UNTIL_RESUMED`: no window, the chat stays with the person until someone gives it back."""


@dataclass(frozen=True)
class Settled:
    """What the records of a chat with (or going to) a person come to: nothing for the model to answer;
    `reply` is sent to the user (the handoff message), or nothing when empty."""

    session: Session
    reply: str = ""
    rest: tuple[InboundRecord, ...] = ()
    """Records the bot answers (they are not stored here; the turn stores them): user messages after an
    operator keyword gave the chat back in the same batch, or those that arrived after the bot got the
    chat back when older ones were still waiting."""


def media_notice(record: InboundRecord) -> str:
    """While a person has the chat media are not fetched (they see them on the phone): a notice stands in."""
    notices = [f"[{media.kind.value}]" for media in record.media]
    return "\n".join(part for part in (record.text, " ".join(notices)) if part)


class HandoffService:
    def __init__(self, store: Store, chat: ChatEngine, clock: Clock, notifier: HandoffNotifier,
                 owners: ProviderOwners) -> None:
        self._owners = owners
        self._chat = chat
        self._store = store
        self._clock = clock
        self.notifier = notifier
        chat.listen_handed_off(self._prompt_while_human)

    def _prompt_while_human(self, session: Session, client: ChatClient, content: Content) -> None:
        text = content if isinstance(content, str) else " ".join(
            str(part.get("text", "")) for part in content if part.get("type") == "text")
        self.user_wrote(session, client, text)

    async def take(
        self, session: Session, client: ChatClient, *, by: HandoffTrigger, reason: str | None = None,
        agent: str | None = None, until: datetime | object | None = None, stop_turns: bool = True,
    ) -> Session | None:
        """The chat goes to a person until `until` (default: the client's window from now, never shortening
        a takeover until resumed; UNTIL_RESUMED: no end). Running turns of the chat stop (not when the
        caller is that turn: the model's tool). A provider with its own status (Chatwoot) is told, unless
        the change came from it."""
        now = self._clock.now()
        was_human = session.handoff is not None and session.handoff.is_human(now)
        end = None if until is UNTIL_RESUMED else until if isinstance(until, datetime) else \
            None if was_human and session.handoff is not None and session.handoff.until is None else \
            now + client.client_parameters.handoff.window
        since = session.handoff.since if was_human and session.handoff is not None else now
        state = Handoff(state=Controller.HUMAN, by=by, reason=reason, agent=agent, since=since, until=end)
        if was_human and session.handoff is not None:  # sliding: who took it and why stay as they were
            state = session.handoff.model_copy(update={"until": end, "agent": agent or session.handoff.agent})
        stored = await self._store.sessions.set_handoff(session.account_id, session.id, state)
        if stored is None:
            return None
        if stop_turns:
            await self._chat.cancel(session.id)
        if not was_human:
            log.info("session %s handed to a person (%s)", session.id, by.value)
            self._tell(HandoffEventKind.STARTED, stored, client, by, reason=reason, agent=agent)
            if by is not HandoffTrigger.CHATWOOT:
                await self._owners.tell(stored, client, Controller.HUMAN)
        return stored

    async def resume(self, session: Session, client: ChatClient, *, by: HandoffTrigger,
                     agent: str | None = None) -> Session | None:
        """The bot answers again from the next message; the exchange meanwhile stays in its history."""
        now = self._clock.now()
        was_human = session.handoff is not None and session.handoff.is_human(now)
        state = Handoff(state=Controller.BOT, by=by, agent=agent, since=now)
        stored = await self._store.sessions.set_handoff(session.account_id, session.id, state)
        if stored is not None and was_human:
            log.info("session %s back with the bot (%s)", session.id, by.value)
            self._tell(HandoffEventKind.ENDED, stored, client, by, agent=agent)
        if stored is not None and by is not HandoffTrigger.CHATWOOT:  # even if botline's window had lapsed
            await self._owners.tell(stored, client, Controller.BOT)
        return stored

    async def provider_owner(self, client: ChatClient, chat: ChatKey, owner: Controller) -> None:
        """The provider changed who answers the chat without a message (Chatwoot: an agent opened or
        resolved the conversation): mirrored on the chat's session, if it has one (a chat without one
        gets the status with its first message)."""
        session = await self._store.sessions.get_by_tag(client.account_id, client.id, chat.external_user_id)
        if session is None:
            return
        human = session.handoff is not None and session.handoff.is_human(self._clock.now())
        if owner is Controller.HUMAN and not human:
            await self.take(session, client, by=HandoffTrigger.CHATWOOT, reason=OPENED_AT_PROVIDER,
                            until=UNTIL_RESUMED)
        elif owner is Controller.BOT and human:
            await self.resume(session, client, by=HandoffTrigger.CHATWOOT)

    async def operator_message(self, session: Session, client: ChatClient, text: str, *,
                               agent: str | None, by: HandoffTrigger = HandoffTrigger.API) -> Message | None:
        """A person answers through the API: stored as the business speaking, the takeover (re)started
        for the client's window. None when the session is gone."""
        stored = await self.take(session, client, by=by, agent=agent, reason="an agent answered")
        if stored is None:
            return None
        message = Message(session_id=session.id, role=Role.ASSISTANT, content=text, agent=agent or OPERATOR,
                          created_at=self._clock.now())
        if not await self._chat.record(session.account_id, session.id, [message]):
            return None
        await self._chat.live.announce(session.id)
        return message

    async def settle(self, session: Session, client: ChatClient, records: Sequence[InboundRecord]) -> Settled | None:
        """Channel records of a chat, as far as a person is concerned; None: the bot answers them all.

        Records that arrived before the bot got the chat back (still waiting when it was given back: a
        slow replica, a debounce) were the person's: stored in the history, never answered by the bot,
        so nobody is answered twice. The rest go on as `_settle_current` says."""
        returned = None if session.handoff is None else session.handoff.returned_at(self._clock.now())
        earlier = [r for r in records if returned is not None and r.received_at < returned]
        if not earlier:
            return await self._settle_current(session, client, records)
        history = [self._message(session, record) for record in earlier]
        await self._chat.record(session.account_id, session.id, history)
        self._tell_messages(session, client, [m for m in history if m.role is Role.USER])
        later = [r for r in records if r not in earlier]
        if not later:
            return Settled(session=session)
        settled = await self._settle_current(session, client, later)
        return Settled(session=session, rest=tuple(later)) if settled is None else settled

    @staticmethod
    def _message(session: Session, record: InboundRecord) -> Message:
        agent = (record.sender_name or OPERATOR) if record.operator else None
        return Message(session_id=session.id, role=Role.ASSISTANT if record.operator else Role.USER,
                       content=media_notice(record), agent=agent, created_at=record.received_at)

    async def _settle_current(
        self, session: Session, client: ChatClient, records: Sequence[InboundRecord]
    ) -> Settled | None:
        """Channel records of a chat with a person, or that hand it to one or back: stored in order, the
        state changed as they say, nothing for the model. None: the bot answers them as usual.

        In order: an operator message takes the chat (its window sliding with each), an operator keyword
        ("#bot") gives it back and is not stored, a user keyword asks for a person (the handoff message
        is the reply). Only a chat with nobody of these stays the bot's; user messages after the chat was
        given back are left to the bot (`rest`)."""
        settings = client.client_parameters.handoff
        now = self._clock.now()
        session = await self._follow_provider(session, client, records)
        human = session.handoff is not None and session.handoff.is_human(now)
        held = _provider_says(records) is Controller.HUMAN
        involved = human or held or any(r.operator for r in records) or any(
            not r.operator and is_keyword(r.text, settings.user_keywords) for r in records)
        if not involved:
            return None
        opened = held and not human  # the provider gave the chat to a person; botline had not heard of it
        human = human or held
        messages: list[Message] = []
        took = asked = resumed = False  # since the last operator keyword, which undoes what came before
        agent: str | None = None
        kept, rest_from = 0, len(records)  # the messages stored and the records after the last keyword
        for index, record in enumerate(records):
            if record.operator and is_keyword(record.text, settings.operator_keywords):
                human, took, asked, resumed = False, False, False, True
                kept, rest_from = len(messages), index + 1
                continue
            role = Role.ASSISTANT if record.operator else Role.USER
            if record.operator:
                agent = record.sender_name or OPERATOR
                human, took = True, True
            elif not human and is_keyword(record.text, settings.user_keywords):
                human, asked = True, True
            messages.append(Message(session_id=session.id, role=role, content=media_notice(record),
                                    agent=agent if record.operator else None, created_at=record.received_at))
        rest: tuple[InboundRecord, ...] = ()
        if resumed and not human:  # given back, and nobody took it again: the bot answers what followed
            messages, rest = messages[:kept], tuple(records[rest_from:])
        reply = settings.user_message if asked and not took else ""
        if reply:
            messages.append(Message(session_id=session.id, role=Role.ASSISTANT, content=reply, created_at=now))
        await self._chat.record(session.account_id, session.id, messages)
        stored: Session | None = session
        if took:
            stored = await self.take(session, client, by=HandoffTrigger.OPERATOR, reason=TYPED_BY_OPERATOR,
                                     agent=agent)
        elif asked:
            stored = await self.take(session, client, by=HandoffTrigger.KEYWORD, reason=ASKED_BY_USER)
        elif resumed:
            stored = await self.resume(session, client, by=HandoffTrigger.KEYWORD)
        elif opened:
            stored = await self.take(session, client, by=HandoffTrigger.CHATWOOT, reason=OPENED_AT_PROVIDER,
                                     until=UNTIL_RESUMED)
        if human and not asked:
            self._tell_messages(stored or session, client, [m for m in messages if m.role is Role.USER])
        return Settled(session=stored or session, reply=reply, rest=rest)

    async def _follow_provider(self, session: Session, client: ChatClient, records: Sequence[InboundRecord]
                               ) -> Session:
        """A message the provider says is the bot's, in a chat botline holds for a person because that
        provider said so earlier: the provider gave it back (its resolve event may still be on its way,
        events arrive out of order)."""
        handoff = session.handoff
        if (_provider_says(records) is not Controller.BOT or handoff is None
                or handoff.by is not HandoffTrigger.CHATWOOT or not handoff.is_human(self._clock.now())):
            return session
        return await self.resume(session, client, by=HandoffTrigger.CHATWOOT) or session

    def user_wrote(self, session: Session, client: ChatClient, text: str) -> None:
        """A user message recorded while a person has the chat: the operators' webhook hears of it."""
        self._tell(HandoffEventKind.MESSAGE, session, client, HandoffTrigger.OPERATOR, text=text)

    def _tell_messages(self, session: Session, client: ChatClient, messages: Sequence[Message]) -> None:
        for message in messages:
            if isinstance(message.content, str):
                self.user_wrote(session, client, message.content)

    def _tell(self, kind: HandoffEventKind, session: Session, client: ChatClient, trigger: HandoffTrigger, *,
              reason: str | None = None, agent: str | None = None, text: str | None = None) -> None:
        self.notifier.notify(HandoffEvent(kind=kind, session=session, client=client, trigger=trigger,
                                          moment=self._clock.now().isoformat(), reason=reason, agent=agent,
                                          text=text))


def _provider_says(records: Sequence[InboundRecord]) -> Controller | None:
    """Who the provider says answers the chat, as of the newest record that says it."""
    return next((r.owner for r in reversed(records) if r.owner is not None), None)
