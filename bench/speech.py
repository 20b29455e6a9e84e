"""Spoken answers on the web chat (issue 15 §5): from the end of the text answer to the first audio byte,
over a fake speech endpoint of fixed latency that streams, and the audio cache's hit rate for replays
and retries.

botline runs in this process on SQLite with the fake LLM, whose /audio/speech sends its first part after
`--latency` seconds and the other three `--chunk-delay` apart (chunked, as OpenAI streams). Per prompt: a
streamed prompt; when its `done` event (the whole text) has been read, the page's GET .../audio is sent,
and the times to its first and to its last body byte taken; "added" is the first minus the fake's latency
(what botline adds), and "last byte" shows what relaying the audio as it arrives saves over reading it
whole first (that would put the first byte after the last part). Then each answer's audio is asked for
again `--replays` times (page reloads: the audio kept with the answer), and each prompt is retried once
(POST /retry, the same answer again: a new message whose audio comes from the Store's shared cache); the
hit rate is botline's own `botline_speech_requests_total` (cached / all).

    PYTHONPATH=src .venv/bin/python -m bench.speech [--prompts 30] [--latency 0.2] [--chunk-delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.metrics import scrape
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public, sse_events


@dataclass
class SpeechResult:
    prompts: int
    latency_ms: float
    stream_ms: float
    """From the fake's first part to its last."""
    added_p50_ms: float
    added_p95_ms: float
    added_max_ms: float
    last_byte_p50_ms: float
    """From the end of the text to the last audio byte, minus the fake's latency."""
    replays: int
    synthesized: float
    cached: float
    hit_rate: float
    seconds: float


async def _done(server: RunningServer, key: str, text: str) -> str:
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt(text)) as response:
        done = [data async for name, data in sse_events(response) if name == "done"][-1]
    return str(done["messageId"])


async def _audio_bytes(server: RunningServer, key: str, message_id: str) -> tuple[float, float]:
    """Seconds from now to the first and to the last byte of the answer's audio."""
    asked = time.perf_counter()
    async with server.http.get(server.url + public(key, f"/messages/{message_id}/audio")) as audio:
        await audio.content.readany()
        first_byte = time.perf_counter()
        await audio.read()
    return first_byte - asked, time.perf_counter() - asked


async def measure(prompts: int, latency: float, chunk_delay: float, replays: int) -> SpeechResult:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(f"sqlite:///{Path(tmp) / 'botline.db'}", logging={"level": "WARNING"})
        async with FakeLLM() as fake, running_server(settings) as server:
            key = str((await open_session(server, await create_client(
                server, fake, audioSynthesisSource="Gpt4oTts")))["accessKey"])
            fake.script_speech(*(Reply(delay=latency, chunk_delay=chunk_delay) for _ in range(prompts)))
            added, last, ids = [], [], []
            for n in range(prompts):
                answer = f"Answer number {n}: we open at nine and close at five."
                fake.script(Reply(text=answer))
                message_id = await _done(server, key, f"question {n}")
                first_byte, last_byte = await _audio_bytes(server, key, message_id)
                added.append((first_byte - latency) * 1000)
                last.append((last_byte - latency) * 1000)
                ids.append(message_id)
                for _ in range(replays):  # reloads: the audio kept with the answer
                    await _audio_bytes(server, key, message_id)
                async with server.http.post(server.url + public(key, "/retry")) as retried:
                    assert retried.status == 204
                fake.script(Reply(text=answer))  # a retry that gets the same answer: the shared cache's audio
                await _audio_bytes(server, key, await _done(server, key, f"question {n}"))
            metrics = await scrape(server)
    synthesized = metrics.value("botline_speech_requests_total", outcome="synthesized")
    cached = metrics.value("botline_speech_requests_total", outcome="cached")
    return SpeechResult(
        prompts=prompts, latency_ms=latency * 1000, stream_ms=round(chunk_delay * 3000, 1),
        added_p50_ms=round(statistics.median(added), 2), added_p95_ms=round(percentile(added, 0.95), 2),
        added_max_ms=round(max(added), 2), last_byte_p50_ms=round(statistics.median(last), 2), replays=replays,
        synthesized=synthesized, cached=cached, hit_rate=round(cached / max(synthesized + cached, 1), 3),
        seconds=round(time.perf_counter() - started, 1),
    )


def table(result: SpeechResult) -> str:
    return "\n".join([
        "| fake TTS: first part / rest streamed over | prompts | added to first audio byte p50 / p95 / max | "
        "last audio byte p50 (over latency) | replays + retries per answer | synthesised | cached | "
        "cache hit rate |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result.latency_ms:.0f} ms / {result.stream_ms:.0f} ms | {result.prompts} | {result.added_p50_ms} / "
        f"{result.added_p95_ms} / {result.added_max_ms} ms | {result.last_byte_p50_ms} ms | {result.replays} + 1 | "
        f"{result.synthesized:.0f} | {result.cached:.0f} | {result.hit_rate:.1%} |",
    ])


def run(*, quick: bool) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(measure(10 if quick else 30, 0.2, 0.05, 2))
    return table(result), asdict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake speech endpoint takes")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between the fake's audio parts")
    parser.add_argument("--replays", type=int, default=2)
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.prompts, args.latency, args.chunk_delay, args.replays))))


if __name__ == "__main__":
    main()
