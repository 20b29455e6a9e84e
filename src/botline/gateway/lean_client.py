"""`LeanModelClient`: the model call of a turn on aiohttp, through the egress pools, without the SDK.

Why ours (docs/decisions.md, "The model call is ours"): two thirds of /v1's CPU went to the openai SDK
(httpx request building, its retry machinery, header objects) for a call whose body we already shape
and whose answer we already read with orjson. This client does only what that call needs:

- the destination is checked per request (`Egress.check_destination`; host names by the tenant
  pool's resolver, on the address connected to), and the body is capped while it is read
  (`security.egress.model_response_max_bytes`), as the SDK transport does (egress/sdk_transport.py);
- connections come from `Egress.session(trust)`: one aiohttp connector per trust, which keeps one
  keep-alive pool per upstream (host, port, TLS) and caps each at `llm.max_connections`;
- the body is orjson bytes, the answer is read by orjson; a stream is parsed as it arrives, line by
  line on the bytes of each read (a memoryview per `data:` line, no str decode, no per-chunk object
  but orjson's dict), and its text goes on in one piece per upstream read;
- retries, backoff and Retry-After are the SDK's policy (gateway/retries.py); timeouts are the SDK
  client's (connect, and per read); errors are mapped by gateway/llm.py, the same texts;
- redirects are not followed: an upstream that redirects its completions endpoint fails with its
  status, and `llm.sdk_base_addresses` can send that gateway through the SDK client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from botline.config import LLMSettings
from botline.egress import Egress, EgressError, ResponseTooLarge, Trust
from botline.egress.client import read_capped
from botline.egress.errors import refusal_in
from botline.gateway.errors import UpstreamError
from botline.gateway.model_client import ModelClient
from botline.gateway.reasoning import ALL_KINDS, ReasoningKinds
from botline.gateway.retries import delay_before_retry, should_retry
from botline.gateway.rounds import DeltaSink, Round, StreamAssembler, round_of
from botline.gateway.upstream import (
    PLACEHOLDER_KEY,
    cut_off,
    error_text,
    retry_after_of,
    status_failure,
    timed_out,
    too_large,
    unreachable,
)

STREAM_OPTIONS = {"stream": True, "stream_options": {"include_usage": True}}
DATA = b"data:"
DONE = b"[DONE]"
NEWLINE = b"\n"
SPACE = 0x20
END_SECONDS = 1.0
"""How long the end of a streamed body may take after `data: [DONE]` before its connection is dropped."""


class LeanModelClient(ModelClient):
    def __init__(self, egress: Egress, trust: Trust, *, base_address: str, api_key: str | None,
                 settings: LLMSettings, max_response_bytes: int,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._egress = egress
        self._trust = trust
        self._url = URL(base_address.rstrip("/") + "/chat/completions")
        self._headers = {
            "Authorization": f"Bearer {api_key or PLACEHOLDER_KEY}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._max_retries = settings.max_retries
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.request_timeout_seconds, sock_connect=settings.connect_timeout_seconds,
            sock_read=settings.request_timeout_seconds,
        )
        self._max_bytes = max_response_bytes
        self._sleep = sleep

    async def complete(self, request: dict[str, Any], kinds: ReasoningKinds = ALL_KINDS) -> Round:
        body = orjson.dumps(request)
        retries_taken = 0
        while True:
            response = await self._send(body, retries_taken)
            if response is None:
                retries_taken += 1
                continue
            try:
                raw = await read_capped(response, self._max_bytes)
            except ResponseTooLarge as exc:
                response.close()
                raise too_large() from exc
            except (aiohttp.ClientError, TimeoutError) as exc:  # the SDK retries a body it could not read
                response.close()
                if retries_taken >= self._max_retries:
                    raise (timed_out() if isinstance(exc, TimeoutError) else unreachable(exc)) from exc
                await self._backoff(retries_taken, None)
                retries_taken += 1
                continue
            except BaseException:  # cancelled: the upstream request goes with the connection
                response.close()
                raise
            response.release()
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError("The AI model answered with something that is not JSON.") from exc
            return round_of(payload, str(request["model"]), kinds)

    async def stream(self, request: dict[str, Any], sink: DeltaSink, kinds: ReasoningKinds = ALL_KINDS) -> Round:
        body = orjson.dumps({**request, **STREAM_OPTIONS})
        retries_taken = 0
        while (response := await self._send(body, retries_taken)) is None:
            retries_taken += 1
        assembler = StreamAssembler(str(request["model"]), kinds)
        try:
            ended = await self._read_events(response, assembler, sink)
        except ResponseTooLarge as exc:
            response.close()
            raise too_large() from exc
        except orjson.JSONDecodeError as exc:
            response.close()
            raise UpstreamError("The AI model streamed something that is not JSON.") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.close()
            raise cut_off() from exc
        except BaseException:  # cancelled, or the upstream streamed an error: stop it generating
            response.close()
            raise
        if ended:
            response.release()
        else:
            response.close()
        return assembler.result()

    async def _read_events(self, response: aiohttp.ClientResponse, assembler: StreamAssembler,
                           sink: DeltaSink) -> bool:
        """Feeds each `data:` line to `assembler` as its read arrives; one `flush` per read. True when
        the body was read to its end, so the connection can serve the next call."""
        limit = self._max_bytes
        seen = 0
        pending = b""
        async for block in response.content.iter_any():
            seen += len(block)
            if seen > limit:
                raise ResponseTooLarge(limit)
            buffer = pending + block if pending else block
            consumed = _feed_lines(buffer, assembler)
            await assembler.flush(sink)
            if consumed < 0:
                return await _body_ends(response, limit - seen)
            pending = buffer[consumed:] if consumed < len(buffer) else b""
        if pending:  # a last line without its newline
            _feed_lines(pending + NEWLINE, assembler)
            await assembler.flush(sink)
        return True

    async def _backoff(self, retries_taken: int, headers: Mapping[str, str] | None) -> None:
        await self._sleep(delay_before_retry(retries_taken, headers, time.time(), random.random))

    async def _send(self, body: bytes, retries_taken: int) -> aiohttp.ClientResponse | None:
        """One attempt: the response when it is a success; None once it has waited for the next attempt;
        UpstreamError when the call failed for good (the last attempt never returns None)."""
        last = retries_taken >= self._max_retries
        try:
            self._egress.check_destination(self._url, self._trust)
            response = await self._egress.session(self._trust).post(
                self._url, data=body, headers=self._headers, timeout=self._timeout, allow_redirects=False,
            )
        except EgressError as exc:
            raise unreachable(exc) from exc
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            if last:
                raise timed_out() from exc
            await self._backoff(retries_taken, None)
            return None
        except (aiohttp.ClientError, OSError) as exc:
            if last or refusal_in(exc) is not None:  # a destination refused stays refused
                raise unreachable(exc) from exc
            await self._backoff(retries_taken, None)
            return None
        if response.status < 300:
            return response
        headers = response.headers
        if not last and should_retry(response.status, headers, time.time()):
            response.close()
            await self._backoff(retries_taken, headers)
            return None
        try:
            text = error_text(response.status, await read_capped(response, self._max_bytes))
        except (EgressError, aiohttp.ClientError, TimeoutError):
            text = f"Error code: {response.status}"
        finally:
            response.close()
        raise status_failure(response.status, text, retry_after_of(headers))


async def _body_ends(response: aiohttp.ClientResponse, room: int) -> bool:
    """After `data: [DONE]`: reads what is left of the body (the end of the chunked encoding, which
    often comes in the next read), as the SDK does, so the connection goes back to the pool instead
    of a new one per call. The answer is complete already: an upstream that sends more than `room`
    bytes, fails, or keeps the body open longer than END_SECONDS only loses its connection."""
    content = response.content
    if content.at_eof():
        return True
    try:
        async with asyncio.timeout(END_SECONDS):
            while block := await content.readany():
                room -= len(block)
                if room < 0:
                    return False
    except (aiohttp.ClientError, TimeoutError):
        return False
    return True


def _feed_lines(buffer: bytes, assembler: StreamAssembler) -> int:
    """Feeds the complete `data:` lines of `buffer`; returns where the unfinished line starts, or -1 at
    `data: [DONE]`. orjson reads each line's JSON in place, through a memoryview."""
    view = memoryview(buffer)
    start = 0
    while (end := buffer.find(NEWLINE, start)) >= 0:
        if buffer.startswith(DATA, start):
            data = start + len(DATA)
            if data < end and buffer[data] == SPACE:
                data += 1
            if buffer.startswith(DONE, data):
                return -1
            assembler.feed(orjson.loads(view[data:end]))
        start = end + 1
    return start
