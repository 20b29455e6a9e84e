"""Shared plumbing for the messaging-provider emulators (Z-API, Evolution API, Kapso).

:class:`WebhookPusher` POSTs exact bytes to a webhook receiver, records every
attempt as a :class:`Delivery` and can follow a provider's retry schedule.
:class:`ProviderEmulator` is the base of each fake provider: a real aiohttp
server on a local port (``async with``, :attr:`~ProviderEmulator.url`), the
record of every request to a send endpoint, failure injection
(:meth:`~ProviderEmulator.fail_next`) and event-based waits. Subclasses add
the provider's routes, error bodies and payload builders.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from aiohttp import web

from tests.emulators.lifecycle import Changes, Served

__all__ = [
    "Delivery",
    "InjectedFailure",
    "Instant",
    "ProviderEmulator",
    "ReceivedWebhook",
    "RecordedSend",
    "WebhookPusher",
    "WebhookReceiver",
    "drop_none",
    "encode_payload",
    "exponential_delays",
    "retry_after_header",
    "serve_forever",
]

JSON = "application/json"
_SHUTDOWN_TIMEOUT = 0.05  # seconds in-flight requests get when an emulator stops

Payload = Mapping[str, Any] | bytes


def encode_payload(payload: Payload) -> bytes:
    """The bytes sent on the wire: ``bytes`` verbatim, a mapping as compact JSON.

    orjson's output (no spaces, UTF-8 kept as is) is what ``JSON.stringify``
    and the providers' Java/Ruby serialisers produce for the same object.
    """
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return orjson.dumps(payload)


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds as an integer, else the float."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def drop_none(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without ``None`` entries, as ``JSON.stringify`` drops ``undefined`` fields."""
    return {key: item for key, item in value.items() if item is not None}


@dataclass
class Delivery:
    """One POST an emulator made to a webhook receiver (one retry = one more Delivery)."""

    url: str
    headers: dict[str, str]
    body: bytes
    """The exact bytes sent (signatures are computed over these)."""
    status: int | None
    """The receiver's HTTP status; ``None`` when the connection failed or timed out."""
    attempt: int = 1
    """1 for the first try, 2 for the first retry, and so on."""
    error: str | None = None
    """Why no status was received."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


@dataclass
class RecordedSend:
    """A request to one of an emulator's send endpoints, as the provider saw it."""

    endpoint: str
    """The provider's name for the operation, e.g. ``"send-text"``, ``"sendText"``, ``"messages"``."""
    path: str
    headers: Mapping[str, str]
    """Case-insensitive request headers."""
    body: dict[str, Any]
    """The parsed JSON object ({} if the body was not one)."""
    raw: bytes = b""
    """The request body bytes."""
    status: int = 0
    """The status the emulator answered."""
    response: Any = None
    """The JSON the emulator answered."""


@dataclass
class InjectedFailure:
    """A scripted failure of the next send request (see :meth:`ProviderEmulator.fail_next`)."""

    status: int
    retry_after: float | None = None
    """Seconds for a ``Retry-After`` header; ``None`` sends none."""
    body: Any = None
    """JSON body to answer; ``None`` uses the provider's own error body for ``status``."""


class WebhookPusher:
    """POSTs webhook bodies and records every attempt in :attr:`deliveries`."""

    def __init__(self, *, timeout: float = 10.0, on_change: Callable[[], None] | None = None) -> None:
        """``timeout`` is the per-attempt time limit (seconds); ``on_change`` is called after each attempt."""
        self.deliveries: list[Delivery] = []
        """Every attempt, in order of completion."""
        self._timeout = timeout
        self._on_change = on_change or (lambda: None)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, attempt: int = 1) -> int:
        """One POST of exactly ``body``; the receiver's status.

        A connection failure or timeout is recorded (status ``None``) and re-raised.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        sent_headers = dict(headers)
        try:
            async with self._session.post(url, data=body, headers=sent_headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._record(Delivery(url, sent_headers, body, None, attempt, repr(exc)))
            raise
        self._record(Delivery(url, sent_headers, body, status, attempt))
        return status

    async def deliver(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        delays: Sequence[float] = (),
        give_up: Callable[[int | None], bool] = lambda status: status is not None and 200 <= status < 300,
    ) -> int | None:
        """POST, then retry after each of ``delays`` (seconds) until ``give_up(status)`` is true.

        ``give_up`` receives the status (``None`` for a connection failure) and
        says whether to stop; the default stops on any 2xx. Returns the last status.
        """
        status: int | None = None
        for attempt in range(1, len(delays) + 2):
            if attempt > 1:
                await asyncio.sleep(delays[attempt - 2])
            try:
                status = await self.post(url, body, headers, attempt=attempt)
            except (aiohttp.ClientError, TimeoutError):
                status = None
            if give_up(status):
                break
        return status

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coroutine`` in the background; :meth:`close` cancels what is still running."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait until every background delivery has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel background deliveries and close the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._on_change()


def exponential_delays(
    attempts: int, initial: float, maximum: float, *, jitter: float = 0.0, scale: float = 1.0
) -> list[float]:
    """Delays before retries 1..attempts-1: ``initial`` doubling up to ``maximum``,
    ±``jitter`` (a fraction) but never below ``initial``, all multiplied by ``scale``."""
    delays = []
    delay = initial
    for _ in range(attempts - 1):
        jittered = delay * (1 + random.uniform(-jitter, jitter)) if jitter else delay
        delays.append(max(initial, jittered) * scale)
        delay = min(delay * 2, maximum)
    return delays


class ProviderEmulator(Served):
    """Base of a fake messaging provider; use ``async with Subclass() as fake:``.

    Subclasses implement :meth:`_add_routes` and :meth:`_failure_response`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
        retry_scale: float = 1.0,
        webhook_timeout: float = 10.0,
    ) -> None:
        """``now`` returns the emulator's clock (epoch seconds) for timestamps;
        ``retry_scale`` multiplies the provider's webhook retry delays (0.001 makes
        them milliseconds in tests); ``webhook_timeout`` limits each webhook POST."""
        self.url = ""
        """``http://<host>:<port>`` once started; the provider's API base URL."""
        self.now = now
        """The emulator's clock in epoch seconds; replace it to move time."""
        self.retry_scale = retry_scale
        self.requests: list[RecordedSend] = []
        """Every request to a send endpoint, accepted or not, in arrival order."""
        self.sent: list[RecordedSend] = []
        """The accepted (2xx) message sends, in arrival order."""
        self._changes = Changes()
        self.pusher = WebhookPusher(timeout=webhook_timeout, on_change=self._changes.notify)
        self._host = host
        self._port = port
        self._failures: deque[InjectedFailure] = deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; :attr:`url` is valid afterwards."""
        app = web.Application()
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.url = f"http://{self._host}:{site.port}"

    async def stop(self) -> None:
        """Cancel background webhook deliveries and stop listening."""
        await self.pusher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- test controls -----------------------------------------------------------------------

    def fail_next(
        self, status: int = 500, *, retry_after: float | None = None, count: int = 1, body: Any = None
    ) -> None:
        """Make the next ``count`` authenticated message sends fail with ``status``.

        The answer is the provider's own error body for that status (or ``body``),
        with ``Retry-After: <retry_after>`` when given. Failed sends are kept in
        :attr:`requests`, never in :attr:`sent`.
        """
        self._failures.extend(InjectedFailure(status, retry_after, body) for _ in range(count))

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook POST made so far (pushes, emits, retries)."""
        return self.pusher.deliveries

    async def wait_for_sends(self, n: int, timeout: float = 5) -> list[RecordedSend]:
        """Wait until at least ``n`` sends were accepted; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.sent) >= n, timeout)
        return self.sent

    async def wait_for_requests(self, n: int, timeout: float = 5) -> list[RecordedSend]:
        """Wait until at least ``n`` send requests arrived (accepted or not)."""
        await self._changes.wait_until(lambda: len(self.requests) >= n, timeout)
        return self.requests

    async def wait_for_deliveries(self, n: int, timeout: float = 5) -> list[Delivery]:
        """Wait until at least ``n`` webhook POSTs were made (retries count)."""
        await self._changes.wait_until(lambda: len(self.pusher.deliveries) >= n, timeout)
        return self.pusher.deliveries

    async def drain_webhooks(self) -> None:
        """Wait for every background webhook delivery (and its retries) to finish."""
        await self.pusher.drain()

    async def push_many(
        self, url: str, payloads: Sequence[Payload], *, concurrently: bool = False, **options: Any
    ) -> list[int]:
        """:meth:`push` each payload, one after the other or all at once; their statuses.

        Pushing one payload twice is how a provider's duplicate delivery looks.
        """
        if concurrently:
            return list(await asyncio.gather(*(self.push(url, payload, **options) for payload in payloads)))
        return [await self.push(url, payload, **options) for payload in payloads]

    async def push(self, url: str, payload: Payload, *, headers: Mapping[str, str] | None = None) -> int:
        """POST one webhook ``payload`` (a mapping, or exact bytes) to ``url``; the receiver's status."""
        raise NotImplementedError

    # -- for subclasses ----------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _failure_response(self, failure: InjectedFailure) -> web.Response:
        """The provider's answer for an injected failure (status, body, Retry-After)."""
        raise NotImplementedError

    def _take_failure(self) -> web.Response | None:
        if not self._failures:
            return None
        failure = self._failures.popleft()
        response = self._failure_response(failure)
        if failure.retry_after is not None:
            response.headers["Retry-After"] = retry_after_header(failure.retry_after)
        return response

    async def _read(self, request: web.Request) -> tuple[bytes, dict[str, Any], bool]:
        """The raw body, the parsed JSON object ({} if none) and whether it parsed as an object."""
        raw = await request.read()
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return raw, parsed, True
        return raw, {}, False

    def _record(self, send: RecordedSend, *, message: bool = True) -> None:
        """Keep ``send`` in :attr:`requests` and, if it is an accepted message send, in :attr:`sent`."""
        self.requests.append(send)
        if message and 200 <= send.status < 300:
            self.sent.append(send)
        self._changes.notify()

    @staticmethod
    def _json(status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)


@dataclass
class Instant:
    """A moment of the emulator clock in the providers' timestamp formats."""

    seconds: float = field(default_factory=time.time)

    @property
    def millis(self) -> int:
        return int(self.seconds * 1000)

    @property
    def iso(self) -> str:
        """``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.seconds))

    @property
    def iso_millis(self) -> str:
        """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (JavaScript's ``toISOString``)."""
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.seconds))
        return f"{base}.{int(self.seconds * 1000) % 1000:03d}Z"


@dataclass
class ReceivedWebhook:
    """A POST that reached a :class:`WebhookReceiver`."""

    path: str
    headers: Mapping[str, str]
    body: bytes
    """The exact bytes received."""
    status: int
    """What the receiver answered."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


class WebhookReceiver:
    """A tiny webhook endpoint for tests of the emulators: records every POST and
    answers scripted statuses (FIFO; 200 once the script is empty).

    Use ``async with WebhookReceiver() as hook:`` and push to :attr:`url` (any path).
    """

    def __init__(self, *statuses: int, host: str = "127.0.0.1") -> None:
        self.url = ""
        """``http://<host>:<port>`` once started."""
        self.received: list[ReceivedWebhook] = []
        self._statuses: deque[int] = deque(statuses)
        self._host = host
        self._changes = Changes()
        self._runner: web.AppRunner | None = None

    def script(self, *statuses: int) -> None:
        """Answer the next POSTs with these statuses."""
        self._statuses.extend(statuses)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        self.url = f"http://{self._host}:{site.port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, n: int, timeout: float = 5) -> list[ReceivedWebhook]:
        """Wait until at least ``n`` POSTs arrived; TimeoutError after ``timeout``."""
        await self._changes.wait_until(lambda: len(self.received) >= n, timeout)
        return self.received

    async def _handle(self, request: web.Request) -> web.Response:
        status = self._statuses.popleft() if self._statuses else 200
        self.received.append(ReceivedWebhook(request.path, request.headers, await request.read(), status))
        self._changes.notify()
        return web.Response(status=status, text="ok")


def serve_forever(emulator: ProviderEmulator, describe: Callable[[ProviderEmulator], str]) -> None:
    """Run ``emulator`` until interrupted, printing ``describe(emulator)`` once it listens
    (the ``python -m tests.emulators.<provider>`` entry points use this)."""

    async def serve() -> None:
        async with emulator:
            print(describe(emulator), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
