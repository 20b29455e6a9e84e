"""Spoken answers on the web chat (issue 15 §5): from the end of the text answer to the first audio byte,
over a fake speech endpoint of fixed latency, and the audio cache's hit rate when answers are replayed.

botline runs in this process on SQLite with the fake LLM (its /audio/speech answers after `--latency`
seconds). Per prompt: a streamed prompt; when its `done` event (the whole text) has been read, the page's
GET .../audio is sent and the time to its first body byte taken; "added" is that time minus the fake's
latency. Then every answer's audio is asked for again `--replays` times (a page reload, a retry, a second
player) and the hit rate read from botline's own `botline_speech_requests_total`.

    PYTHONPATH=src .venv/bin/python -m bench.speech [--prompts 30] [--latency 0.2] [--replays 2]
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
    added_p50_ms: float
    added_p95_ms: float
    added_max_ms: float
    replays: int
    synthesized: float
    cached: float
    hit_rate: float
    seconds: float


async def _first_audio_byte(server: RunningServer, key: str, text: str) -> tuple[float, str]:
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt(text)) as response:
        done = [data async for name, data in sse_events(response) if name == "done"][-1]
    text_done = time.perf_counter()
    async with server.http.get(server.url + public(key, f"/messages/{done['messageId']}/audio")) as audio:
        await audio.content.readany()
        first_byte = time.perf_counter()
        await audio.read()
    return first_byte - text_done, str(done["messageId"])


async def measure(prompts: int, latency: float, replays: int) -> SpeechResult:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(f"sqlite:///{Path(tmp) / 'botline.db'}", logging={"level": "WARNING"})
        async with FakeLLM() as fake, running_server(settings) as server:
            key = str((await open_session(server, await create_client(
                server, fake, audioSynthesisSource="Gpt4oTts")))["accessKey"])
            fake.script_speech(*(Reply(delay=latency) for _ in range(prompts)))
            added, ids = [], []
            for n in range(prompts):
                fake.script(Reply(text=f"Answer number {n}: we open at nine and close at five."))
                seconds, message_id = await _first_audio_byte(server, key, f"question {n}")
                added.append((seconds - latency) * 1000)
                ids.append(message_id)
            for _ in range(replays):
                for message_id in ids:
                    async with server.http.get(server.url + public(key, f"/messages/{message_id}/audio")) as audio:
                        await audio.read()
            metrics = await scrape(server)
    synthesized = metrics.value("botline_speech_requests_total", outcome="synthesized")
    cached = metrics.value("botline_speech_requests_total", outcome="cached")
    return SpeechResult(
        prompts=prompts, latency_ms=latency * 1000, added_p50_ms=round(statistics.median(added), 2),
        added_p95_ms=round(percentile(added, 0.95), 2), added_max_ms=round(max(added), 2), replays=replays,
        synthesized=synthesized, cached=cached, hit_rate=round(cached / max(synthesized + cached, 1), 3),
        seconds=round(time.perf_counter() - started, 1),
    )


def table(result: SpeechResult) -> str:
    return "\n".join([
        "| fake TTS latency | prompts | added to first audio byte p50 / p95 / max | replays per answer | "
        "synthesised | cached | cache hit rate |",
        "|---|---|---|---|---|---|---|",
        f"| {result.latency_ms:.0f} ms | {result.prompts} | {result.added_p50_ms} / {result.added_p95_ms} / "
        f"{result.added_max_ms} ms | {result.replays} | {result.synthesized:.0f} | {result.cached:.0f} | "
        f"{result.hit_rate:.1%} |",
    ])


def run(*, quick: bool) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(measure(10 if quick else 30, 0.2, 2))
    return table(result), asdict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake speech endpoint takes")
    parser.add_argument("--replays", type=int, default=2)
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.prompts, args.latency, args.replays))))


if __name__ == "__main__":
    main()
