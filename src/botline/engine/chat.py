"""Running web-chat prompts: limits, one turn at a time per session, cancellation, storage.

A prompt runs in its own task, apart from the HTTP request that started it: when the browser goes
away mid-answer the turn still finishes and is stored, so a reload shows it. DELETE on the session
cancels the running turn, on whichever replica runs it (engine/stops.py); the partial answer is kept
and marked cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botline.domain.chat_clients import ChatClient
from botline.domain.clock import Clock
from botline.domain.conversations import CitedDocument, Message, MessageStatus, Role, Session, TokenUsage
from botline.domain.gateways import Gateway
from botline.engine.answer_files import AnswerFiles
from botline.engine.attachments import AttachmentError, AttachmentReader, Content
from botline.engine.live import LiveMessages
from botline.engine.locks import Lease, SessionLocks
from botline.engine.sessions import SessionService
from botline.engine.stops import TurnStopper
from botline.gateway.caller import Caller, CallSource
from botline.gateway.errors import ContextTooLarge, GatewayError, NoModelConfigured, UpstreamError
from botline.gateway.multimodal import ModelInputs
from botline.gateway.pipeline import ToolStatus, TurnPipeline, TurnRequest, TurnResult
from botline.gateway.reasoning import REASONING_FIELD, ReasoningPolicy
from botline.gateway.registry import GatewayCache
from botline.logs import bind_turn
from botline.metrics import Metrics, Outcome
from botline.ratelimit import RateLimiter
from botline.store.base import PromptWrite, SessionChange, SessionRepository, Store, StoreUnavailable

log = logging.getLogger(__name__)

HOUR_SECONDS = 3600
INTERNAL_ERROR = "Internal error; it has been logged."
MODEL_UNAVAILABLE = "The assistant can't answer right now. Please try again in a moment."
INTERRUPTED = "The assistant was interrupted by a server restart. Your message is kept; send it again in a moment."
WITH_A_PERSON = "a person is handling this chat"


HandedOffListener = Callable[[Session, ChatClient, "Content"], None]


def is_visible(message: Message) -> bool:
    """What the person sees and maxMessages counts: their messages and the final answers, no tool steps."""
    return message.role is Role.USER or (message.role is Role.ASSISTANT and not message.tool_calls)


@dataclass(frozen=True)
class PromptLimits:
    """Caps checked before a prompt costs anything (config `webchat:`)."""

    max_pending: int = 3
    """Prompts of one session running or waiting on this replica (the Store's hourly limit spans replicas)."""
    max_parts: int = 10
    """Content parts (text and attachments) in one prompt."""


class ChatRefused(Exception):
    """The prompt is not accepted; nothing was stored. `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class TurnEvent:
    """Progress of a turn, in the web chat's SSE vocabulary: delta, reasoning, tool, done, error."""

    name: str
    data: dict[str, Any]


@dataclass
class TurnOutcome:
    message: Message
    result: TurnResult | None
    cancelled: bool
    handed_off: bool = False
    """A person has the chat: the user message was stored and the model not asked (`message` is empty)."""
    reasoning: str | None = None
    """The thinking the person may see (the gateway's ThinkingProcess or ReturnReasoningTokens)."""
    media: list[dict[str, Any]] | None = None
    """The answer's files as kept with the conversation (engine/answer_files.py); None: not kept, sent
    inline."""

    def summary(self, *, include_tools: bool) -> dict[str, Any]:
        usage = self.message.usage or TokenUsage()
        tool_calls = []
        if include_tools and self.result is not None:
            tool_calls = [{"name": r.name, "arguments": r.arguments, "result": r.result} for r in self.result.tool_runs]
        return {
            "completionText": self.message.content if isinstance(self.message.content, str) else "",
            "reasoning": self.reasoning,
            "toolCalls": tool_calls,
            "usage": {"promptTokens": usage.prompt_tokens, "completionTokens": usage.completion_tokens,
                      "totalTokens": usage.total_tokens},
            "messageId": self.message.id,
            "cancelled": self.cancelled,
            "handedOff": self.handed_off,
            "media": self.media if self.media is not None else
            [m.wire() for m in self.result.media] if self.result is not None else [],
            "documents": [d.shown() for d in self.message.documents],
        }


@dataclass
class ActiveTurn:
    """A submitted prompt. `events` streams its progress; `task` gives the outcome."""

    session_id: str
    task: asyncio.Task[TurnOutcome] = field(init=False)
    events: asyncio.Queue[TurnEvent] = field(default_factory=asyncio.Queue)
    cancel_requested: bool = False
    started: bool = False
    """The user message is stored and the model is being asked."""
    answered: bool = False
    """The model has answered; from here the turn is stored whole and no longer cancellable."""
    reply_to: list[str] = field(default_factory=list)
    """Inbound record ids this turn answers (channels)."""
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_policy: ReasoningPolicy = field(default_factory=ReasoningPolicy)
    """Set when the turn starts: whether its thinking is shown (streamed) and stored."""
    stopping: asyncio.Task[TurnOutcome] | None = None
    """Storing what a stop left: started once, and not interrupted by whatever cancels the turn next."""


class _EventSink:
    """Text as `delta` events; thinking as `reasoning` events when the gateway shows it."""

    def __init__(self, turn: ActiveTurn, show_tools: bool) -> None:
        self._turn = turn
        self._show_tools = show_tools

    async def text(self, delta: str) -> None:
        self._turn.text.append(delta)
        self._turn.events.put_nowait(TurnEvent("delta", {"text": delta}))

    async def reasoning(self, delta: str) -> None:
        if self._turn.reasoning_policy.shown:
            self._turn.reasoning.append(delta)
            self._turn.events.put_nowait(TurnEvent("reasoning", {"text": delta}))

    async def tool(self, name: str, status: ToolStatus, explanation: str | None = None) -> None:
        if self._show_tools:
            event = {"name": name, "status": status.value}
            if explanation:
                event["explanation"] = explanation
            self._turn.events.put_nowait(TurnEvent("tool", event))


def _outcome_of(task: asyncio.Task[TurnOutcome]) -> Outcome:
    """A finished turn as the turns metric counts it."""
    if task.cancelled():
        return Outcome.CANCELLED
    error = task.exception()
    if error is None:
        return Outcome.CANCELLED if task.result().cancelled else Outcome.ANSWERED
    return Outcome.REFUSED if isinstance(error, ChatRefused | ContextTooLarge) else Outcome.FAILED


def history_of(messages: list[Message]) -> list[dict[str, Any]]:
    """Stored messages as the OpenAI conversation the model sees (cancelled partials included)."""
    history: list[dict[str, Any]] = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role.value, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = message.tool_calls
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.reasoning and message.role is Role.ASSISTANT:  # sent on only with IncludeStoredReasoning
            entry[REASONING_FIELD] = message.reasoning
        history.append(entry)
    return history


class _HistoryRead:
    """Takes a turn's session lease, reads the session's history and writes the person's new message in
    the same Store call (`lease_with_messages`: one round trip on Redis) when the read leaves no other
    choice (`PromptWrite.fits`). Once the lease is taken: `found` is what the read gave, `written` the
    message when it was written, and `now` the moment the turn checks the session at."""

    def __init__(
        self, sessions: SessionRepository, account_id: str, session_id: str, clock: Clock,
        prompt_at: Callable[[datetime], PromptWrite] | None,
    ) -> None:
        """`prompt_at`: the prompt's write as of a moment (None: the turn stores no message of the person's)."""
        self._sessions = sessions
        self._account_id = account_id
        self._session_id = session_id
        self._clock = clock
        self._prompt_at = prompt_at
        self.now = clock.now()
        self.found: tuple[Session, list[Message]] | None = None
        self.written: Message | None = None

    async def take(self, name: str, ttl_seconds: float) -> str | None:
        self.now = self._clock.now()  # at every attempt: the message is stamped when the turn takes the chat
        prompt = None if self._prompt_at is None else self._prompt_at(self.now)
        leased = await self._sessions.lease_with_messages(self._account_id, self._session_id, name,
                                                          ttl_seconds=ttl_seconds, prompt=prompt)
        if leased is None:
            return None
        self.found = leased.found
        self.written = prompt.message if prompt is not None and leased.prompt_written else None
        return leased.token


class ChatEngine:
    def __init__(
        self, store: Store, pipeline: TurnPipeline, sessions: SessionService, limiter: RateLimiter, clock: Clock, *,
        gateways: GatewayCache, metrics: Metrics, limits: PromptLimits | None = None, files: AnswerFiles | None = None,
    ) -> None:
        """`files`: where the web chat's answers keep their images and files (None: sent inline only)."""
        self._metrics = metrics
        self._files = files
        self._limits = limits or PromptLimits()
        self._store = store
        self._gateways = gateways
        self._pipeline = pipeline
        self._sessions = sessions
        self._limiter = limiter
        self._clock = clock
        self._locks = SessionLocks(store.locks)
        self._active: dict[str, list[ActiveTurn]] = {}
        self._starting: dict[str, list[ActiveTurn]] = {}
        """Submitted prompts still being checked (gateway, uploads, rate limit): a stop marks them."""
        self._tasks: set[asyncio.Task[TurnOutcome]] = set()
        self._stopper = TurnStopper(store.signals, self._stop_here)
        self.live = LiveMessages(store.signals)
        """Open chat pages hear of messages no turn of theirs wrote (an agent's, a continuation)."""
        self._on_handed_off: HandedOffListener | None = None

    def listen_handed_off(self, listener: HandedOffListener) -> None:
        """Hears of each user message stored without a turn because a person has the chat."""
        self._on_handed_off = listener

    async def start(self) -> None:
        """Listens for stops and new-message signals sent to any replica."""
        await self._stopper.start()
        await self.live.start()

    async def gateway_for(self, client: ChatClient) -> Gateway:
        gateway = None
        if client.ai_gateway_id:
            gateway = await self._gateways.find(client.account_id, client.ai_gateway_id)
        if gateway is None:
            raise ChatRefused(422, NoModelConfigured().message)
        return gateway

    async def submit(
        self, session: Session, client: ChatClient, content: Content | None, reader: AttachmentReader | None, *,
        source: CallSource = CallSource.WEB_CHAT, note: str | None = None, reply_to: Sequence[str] = (),
    ) -> ActiveTurn:
        """Checks the prompt and starts its turn; raises ChatRefused before anything is stored.

        With `content` None the turn is started by botline itself (a scheduled continuation): no user
        message is stored, `note` is shown to the model as the last system message, and the
        user's hourly limit does not apply (the scheduler counts its own budget before it calls this).
        Order of the checks: pending prompts and parts (free), the gateway, messagesPerHour, and only
        then the uploads are read and audio transcribed, so a throttled prompt costs nothing.
        """
        channel = CallSource.SCHEDULER.channel if content is None else source.channel
        bind_turn(channel, session_id=session.id, gateway=client.ai_gateway_id)  # copied into the turn's task
        try:
            turn = await self._start(session, client, content, reader, source, note, reply_to)
        except (ChatRefused, AttachmentError):
            self._metrics.turn(channel, Outcome.REFUSED)
            raise
        turn.task.add_done_callback(lambda task: self._metrics.turn(channel, _outcome_of(task)))
        return turn

    async def _start(
        self, session: Session, client: ChatClient, content: Content | None, reader: AttachmentReader | None,
        source: CallSource, note: str | None, reply_to: Sequence[str],
    ) -> ActiveTurn:
        self._admit(session.id, content)
        turn = ActiveTurn(session_id=session.id, reply_to=list(reply_to))
        starting = self._starting.setdefault(session.id, [])
        starting.append(turn)  # from here a stop reaches it, though it has no task yet
        try:
            gateway, content = await self._check(session, client, content, reader)
        finally:
            starting.remove(turn)
            if not starting:
                self._starting.pop(session.id, None)
        if turn.cancel_requested:  # stopped while being checked: answered as a stop of a queued turn
            run = self._stopped(turn, client.account_id, session.id)
        else:
            run = self._run(turn, session.id, client, gateway, content, source, note)
        turn.task = asyncio.create_task(run)
        self._tasks.add(turn.task)
        self._active.setdefault(session.id, []).append(turn)
        turn.task.add_done_callback(lambda task: self._forget(turn, task))
        return turn

    def _admit(self, session_id: str, content: Content | None) -> None:
        """The caps that need no I/O. Runs before the turn joins `_starting` with no await in between, so
        prompts arriving together are counted one by one."""
        pending = len(self._active.get(session_id, ())) + len(self._starting.get(session_id, ()))
        if pending >= self._limits.max_pending:
            raise ChatRefused(429, f"This chat already has {pending} messages waiting for an answer; "
                                   "wait for them before sending more.")
        if isinstance(content, list) and len(content) > self._limits.max_parts:
            raise ChatRefused(413, f"A message can have at most {self._limits.max_parts} parts (its text and "
                                   f"attachments); this one has {len(content)}.")

    async def _check(
        self, session: Session, client: ChatClient, content: Content | None, reader: AttachmentReader | None,
    ) -> tuple[Gateway, Content | None]:
        """The gateway that answers and the prompt with its uploads read; counts the prompt against the
        hourly limit first, so a refused prompt reads no upload and pays for no transcription."""
        gateway = await self.gateway_for(client)
        if content is not None:
            await self._count_hourly(session, client)
            if reader is not None:
                content = await reader.read(content, ModelInputs.of(gateway.parameters))
        return gateway, content

    async def _count_hourly(self, session: Session, client: ChatClient) -> None:
        limit = client.limiting_parameters.messages_per_hour
        if limit:
            retry_after = await self._limiter.hit(
                f"chat:{client.id}:{session.tag or session.id}", limit=limit, window_seconds=HOUR_SECONDS
            )
            if retry_after is not None:
                unit = "message" if limit == 1 else "messages"
                raise ChatRefused(429, f"This chat allows {limit} {unit} per hour; try again later.",
                                  retry_after=retry_after)

    def _forget(self, turn: ActiveTurn, task: asyncio.Task[TurnOutcome]) -> None:
        self._tasks.discard(task)
        waiting = self._active.get(turn.session_id, [])
        if turn in waiting:
            waiting.remove(turn)
        if not waiting:
            self._active.pop(turn.session_id, None)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, StoreUnavailable):
            log.warning("turn of session %s failed: %s", turn.session_id, error)
        elif error is not None and not isinstance(error, ChatRefused | GatewayError):
            log.error("web chat turn failed", exc_info=error)

    async def cancel(self, session_id: str) -> int:
        """Cancels the session's running and queued turns, on every replica; returns how many.

        Returns once their partial answers are stored (or after stops.CONFIRM_SECONDS).
        """
        return await self._stopper.stop(session_id)

    async def _stop_here(self, session_id: str, wait_seconds: float) -> int:
        starting = self._starting.get(session_id, [])
        for turn in starting:  # its task, when it gets one, only answers the stop
            turn.cancel_requested = True
        turns = [turn for turn in self._active.get(session_id, []) if not turn.answered]
        for turn in turns:
            if not turn.cancel_requested:  # a turn already stopping is waited for, not cancelled again
                turn.cancel_requested = True
                turn.task.cancel()
        stopped = len(starting) + len(turns)
        if turns:
            await asyncio.wait([turn.task for turn in turns], timeout=wait_seconds)
        return stopped

    async def retry(self, session: Session) -> bool:
        """Removes everything after the last user message; False when there is none."""
        async with self._locks.hold(f"session:{session.id}"):
            messages = await self._store.messages.list(session.id)
            last_user = next((m for m in reversed(messages) if m.role is Role.USER), None)
            if last_user is None:
                return False
            removed = [m for m in messages[messages.index(last_user) + 1:] if is_visible(m)]
            await self._store.messages.delete_after(session.id, last_user.id)
            await self._recount(session, -len(removed))
            return True

    async def record(self, account_id: str, session_id: str, messages: Sequence[Message]) -> bool:
        """Stores messages that need no answer (a person has the chat: the user's, the operator's), in
        order, after any turn of the session; False when the session is gone."""
        if not messages:
            return True
        now = self._clock.now()
        users = [m for m in messages if m.role is Role.USER]
        change = SessionChange(
            messages=sum(1 for m in messages if is_visible(m)), last_message_at=now,
            last_user_message_at=now if users else None, expires_at_least=self._sessions.renewal_floor(),
        )
        async with self._locks.hold(f"session:{session_id}"):
            return await self._store.sessions.add_messages(account_id, session_id, messages, change)

    async def reset(self, session: Session) -> None:
        """Empties the conversation; the session, its key and its links stay."""
        async with self._locks.hold(f"session:{session.id}"):
            await self._store.messages.clear(session.id)
            await self._recount(session, None)

    async def _recount(self, session: Session, delta: int | None) -> None:
        await self._store.sessions.recount(session.account_id, session.id, delta)

    async def close(self, grace_seconds: float | None = None) -> None:
        """Lets running turns finish for up to `grace_seconds` (None: no limit), then abandons the rest:
        their user messages stay stored without an answer, so nothing half-written looks complete
        (a channel's records stay pending and are answered after the restart)."""
        self.live.close()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._locks.close()

    async def _run(
        self, turn: ActiveTurn, session_id: str, client: ChatClient, gateway: Gateway, content: Content | None,
        source: CallSource, note: str | None,
    ) -> TurnOutcome:
        prompt_at = None if content is None else functools.partial(self._prompt_at, session_id, client, content)
        read = _HistoryRead(self._store.sessions, client.account_id, session_id, self._clock, prompt_at)
        try:
            async with self._locks.hold(f"session:{session_id}", taking=read.take) as lease:
                try:
                    return await self._turn(turn, lease, read, client, gateway, content, source, note)
                except UpstreamError as exc:
                    # The provider's own text can quote keys, URLs or quotas: it goes to the log, and the
                    # person chatting gets a plain sentence.
                    log.warning("model call failed for session %s: %s", session_id, exc.message)
                    raise GatewayError(MODEL_UNAVAILABLE, status_code=exc.status_code) from exc
                except asyncio.CancelledError:
                    if not turn.cancel_requested:
                        raise
                    # Still holding the session: the partial answer lands before the next turn starts.
                    return await self._stopped(turn, client.account_id, session_id)
        except asyncio.CancelledError:  # cancelled while waiting for the session: nothing was stored
            if not turn.cancel_requested:  # not the person's stop: the server is going away
                turn.events.put_nowait(TurnEvent("error", {"message": INTERRUPTED}))
                raise
            # Also reached when a further cancel (shutdown) interrupts the wait for the partial answer.
            return await self._stopped(turn, client.account_id, session_id)
        except (ChatRefused, GatewayError) as exc:
            turn.events.put_nowait(TurnEvent("error", {"message": exc.message}))
            raise
        except StoreUnavailable:
            turn.events.put_nowait(TurnEvent("error", {"message": StoreUnavailable.public_message}))
            raise
        except Exception:  # whatever goes wrong, the stream ends with an error event (logged in _forget)
            turn.events.put_nowait(TurnEvent("error", {"message": INTERNAL_ERROR}))
            raise

    def _prompt_at(self, session_id: str, client: ChatClient, content: Content, now: datetime) -> PromptWrite:
        """The person's message as the turn stores it when the session takes it as new."""
        message = Message(session_id=session_id, role=Role.USER, content=content, created_at=now)
        change = SessionChange(messages=1, last_message_at=now, last_user_message_at=now,
                               expires_at_least=self._sessions.renewal_floor())
        return PromptWrite(message, change, now, client.limiting_parameters.max_messages)

    async def _turn(
        self, turn: ActiveTurn, lease: Lease, read: _HistoryRead, client: ChatClient,
        gateway: Gateway, content: Content | None, source: CallSource, note: str | None,
    ) -> TurnOutcome:
        """`read`: the session and its history as read under the lease (`found`: None when the session
        is gone), and the person's message when that read wrote it (`written`): the checks below then pass."""
        found, now = read.found, read.now
        if found is None or not found[0].is_live(now):
            raise ChatRefused(404, "This chat session has ended.")
        session, messages = found
        human = session.handoff is not None and session.handoff.is_human(now)
        # Not with a person: unanswered messages are the rule then, and a second "ok" is a new message.
        repeat = not human and bool(messages) and messages[-1].role is Role.USER and messages[-1].content == content
        cap = client.limiting_parameters.max_messages
        if cap and not repeat and session.message_count >= cap:
            raise ChatRefused(403, f"This conversation reached its limit of {cap} messages; start a new one.")
        if human and content is None:  # a scheduled continuation: the person talking to the user decides
            raise ChatRefused(409, WITH_A_PERSON)
        if read.written is not None:
            messages.append(read.written)
        elif content is not None:
            # An unanswered identical last message (retry, failure, restart) is answered instead.
            prompt = self._prompt_at(session.id, client, content, now)
            new = [] if repeat else [prompt.message]
            change = dataclasses.replace(prompt.change, messages=len(new))
            if not await self._store.sessions.add_messages(session.account_id, session.id, new, change):
                raise ChatRefused(404, "This chat session has ended.")
            messages.extend(new)
        if human:  # read with the session: the check costs no round trip (docs/handoff.md)
            if self._on_handed_off is not None and content is not None:
                self._on_handed_off(session, client, content)
            quiet = Message(session_id=session.id, role=Role.ASSISTANT, content="", created_at=now)
            outcome = TurnOutcome(message=quiet, result=None, cancelled=False, handed_off=True)
            turn.events.put_nowait(TurnEvent("done", outcome.summary(include_tools=False)))
            return outcome
        turn.started = True
        turn.reasoning_policy = policy = ReasoningPolicy.of(gateway.parameters)
        caller = Caller(
            call_source=source, account_id=session.account_id, chat_client_id=session.chat_client_id,
            external_user_id=session.tag,
            conversation_token=session.conversation_token, session_id=session.id, metadata=session.metadata,
        )
        history = history_of(messages)
        if note:
            history.append({"role": "system", "content": note})
        request = TurnRequest(
            gateway=gateway, messages=history, caller=caller, extra_context=session.extra_context,
            context_location=session.context_location, stream=True,
            image_hosts=frozenset(client.client_parameters.image_hosts),
        )
        result = await self._pipeline.run(request, _EventSink(turn, client.client_parameters.show_tool_calls))
        turn.answered = True
        keeps_files = self._files is not None and source is CallSource.WEB_CHAT and bool(result.media)
        # The answer is the last write under the lease (unless its files follow): it frees the lease too.
        final = await self._store_result(session, result, turn.reply_to, keep_reasoning=policy.stored,
                                         lease=None if keeps_files else lease)
        kept = None
        if self._files is not None and keeps_files:
            kept = await self._files.keep(session.id, final.id, result.media)
        outcome = TurnOutcome(message=final, result=result, cancelled=False,
                              reasoning=(result.reasoning or None) if policy.shown else None, media=kept)
        turn.events.put_nowait(TurnEvent("done", outcome.summary(include_tools=False)))
        return outcome

    async def _store_result(
        self, session: Session, result: TurnResult, reply_to: list[str], *, keep_reasoning: bool,
        lease: Lease | None = None,
    ) -> Message:
        """`lease`: freed by the same write (one round trip less on Redis), when nothing after it needs it."""
        now = self._clock.now()
        *steps, last = result.new_messages
        stored = [  # tool-call rounds: kept so later turns see what the tools said
            Message(
                session_id=session.id, role=Role(step["role"]), content=step.get("content"),
                tool_calls=step.get("tool_calls") or [], tool_call_id=step.get("tool_call_id"), created_at=now,
                reasoning=step.get(REASONING_FIELD) if keep_reasoning else None,
            )
            for step in steps
        ]
        final = Message(
            session_id=session.id, role=Role.ASSISTANT, content=last.get("content") or "",
            reasoning=(result.reasoning or None) if keep_reasoning else None, usage=result.usage,
            answers_inbound=reply_to, created_at=now,
            documents=[CitedDocument(id=d.id, name=d.name, collection_id=d.collection_id,
                                     collection_name=d.collection_name) for d in result.documents],
        )
        # Applied to the stored session: the turn took a while, and it may have been renewed or given new context.
        change = SessionChange(messages=1, tokens=result.usage.total_tokens, last_message_at=now)
        await self._store.sessions.add_messages(session.account_id, session.id, [*stored, final], change,
                                                freeing=None if lease is None else lease.freeing())
        if lease is not None:
            lease.freed = True
        return final

    async def _stopped(self, turn: ActiveTurn, account_id: str, session_id: str) -> TurnOutcome:
        """What a stop leaves, stored once: a further cancel (a second stop, the shutdown deadline) neither
        interrupts the write nor repeats it."""
        if turn.stopping is None:
            turn.stopping = asyncio.create_task(self._store_cancelled(turn, account_id, session_id))
        return await asyncio.shield(turn.stopping)

    async def _store_cancelled(self, turn: ActiveTurn, account_id: str, session_id: str) -> TurnOutcome:
        """Keeps what was said before the cancel, marked cancelled (when the turn had started)."""
        shown = "".join(turn.reasoning) or None
        message = Message(
            session_id=session_id, role=Role.ASSISTANT, content="".join(turn.text),
            reasoning=shown if turn.reasoning_policy.stored else None, status=MessageStatus.CANCELLED,
            created_at=self._clock.now(),
        )
        if turn.started:
            change = SessionChange(messages=1, last_message_at=message.created_at)
            await self._store.sessions.add_messages(account_id, session_id, [message], change)
        outcome = TurnOutcome(message=message, result=None, cancelled=True, reasoning=shown)
        turn.events.put_nowait(TurnEvent("done", outcome.summary(include_tools=False)))
        return outcome
