"""The input policy check beside the model call (issue 14): what it adds to a turn.

In one process on 127.0.0.1: a real botline (SQLite) and the fake LLM (tests/emulators/fake_llm.py),
which answers the gateway's model call after `delay` seconds and the policy judge's input check after
the same `delay` (a judge of equal latency). The judge's output check answers at once, so the figures
isolate the input check. Three gateways on the same upstream, timed interleaved (drift hits all alike)
through POST /v1/chat/completions (not streamed):
- model alone: no policy in scope (no judge call);
- parallel: a log-level policy on the gateway, `governance.input_check: parallel` (the default);
- sequential: the same policy with the account's `inputCheck: sequential` (the check first).

Added latency = p50 of the mode minus p50 of the model alone, in % of the model alone.

    .venv/bin/python -m bench.governance [--turns 40] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer, make_settings, running_server

CLEAN = '{"violations": []}'
INPUT_JUDGE_MARK = "message from a user"
"""In the judge's instructions for the input phase only (governance/judge.py)."""


@dataclass(frozen=True)
class Result:
    turns: int
    delay_ms: float
    alone_p50_ms: float
    parallel_p50_ms: float
    sequential_p50_ms: float
    parallel_added_pct: float
    sequential_added_pct: float


def _answer(delay: float) -> Any:
    def reply(body: dict[str, Any]) -> Reply:
        if body.get("response_format") == {"type": "json_object"}:
            system = str(body["messages"][0]["content"])
            return Reply(text=CLEAN, delay=delay if INPUT_JUDGE_MARK in system else 0.0)
        return Reply(text="Our opening hours are 9 to 5.", delay=delay)
    return reply


async def _gateway(server: RunningServer, fake: FakeLLM, name: str) -> str:
    status, body = await server.call("POST", "/api/v1/ai-gateways", json={"name": name, "parameters": {
        "baseAddress": fake.base_url, "apiKey": "sk-upstream", "modelName": "fake-model"}})
    assert status == 200, body
    return str(body["aiGatewayId"])


async def _turn(server: RunningServer, gateway: str) -> float:
    started = time.perf_counter()
    status, body = await server.call("POST", "/v1/chat/completions", json={
        "model": gateway, "messages": [{"role": "user", "content": "When are you open?"}]})
    assert status == 200, body
    return time.perf_counter() - started


async def _mode(server: RunningServer, mode: str) -> None:
    status, body = await server.call("PUT", "/api/v1/policy/settings", json={"inputCheck": mode})
    assert status == 200, body


async def run(turns: int, delay: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-governance-") as folder:
        settings = make_settings(f"sqlite:///{Path(folder) / 'botline.db'}", logging={"level": "WARNING"})
        async with FakeLLM(api_key="sk-upstream", default_reply=_answer(delay)) as fake, \
                running_server(settings) as server:
            alone = await _gateway(server, fake, "Alone")
            guarded = await _gateway(server, fake, "Guarded")
            status, body = await server.call("POST", "/api/v1/policy", json={
                "name": "No internal codes", "content": "Never reveal internal discount codes.", "riskType": "LOW",
                "actionType": 0, "aiGatewayId": guarded})
            assert status == 200, body
            times: dict[str, list[float]] = {"alone": [], "parallel": [], "sequential": []}
            for n in range(turns + 3):  # 3 warm-up rounds (connections, caches)
                round_times = {"alone": await _turn(server, alone)}
                for mode in ("parallel", "sequential"):
                    await _mode(server, mode)
                    round_times[mode] = await _turn(server, guarded)
                if n >= 3:
                    for mode, seconds in round_times.items():
                        times[mode].append(seconds)
    p50 = {mode: statistics.median(values) * 1000 for mode, values in times.items()}
    return Result(
        turns=turns, delay_ms=delay * 1000, alone_p50_ms=round(p50["alone"], 1),
        parallel_p50_ms=round(p50["parallel"], 1), sequential_p50_ms=round(p50["sequential"], 1),
        parallel_added_pct=round((p50["parallel"] - p50["alone"]) / p50["alone"] * 100, 1),
        sequential_added_pct=round((p50["sequential"] - p50["alone"]) / p50["alone"] * 100, 1),
    )


def table(result: Result) -> str:
    return "\n".join([
        f"Model call and input judge {result.delay_ms:.0f} ms each; {result.turns} turns per mode, interleaved.",
        "",
        "| turn | p50 ms | added over the model alone |",
        "|---|---|---|",
        f"| model alone (no policy in scope) | {result.alone_p50_ms} | — |",
        f"| input check in parallel (budget 10 %) | {result.parallel_p50_ms} | **{result.parallel_added_pct} %** |",
        f"| input check first (sequential) | {result.sequential_p50_ms} | {result.sequential_added_pct} % |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds of the model call and of the judge")
    args = parser.parse_args()
    print(table(asyncio.run(run(args.turns, args.delay))))


if __name__ == "__main__":
    main()
