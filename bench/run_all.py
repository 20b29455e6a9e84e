"""`make bench`: every benchmark in turn, a markdown summary on stdout, raw results in bench/results/.

    .venv/bin/python -m bench.run_all [--quick] [--no-profile] [--only NAME ...]

Benchmarks register in BENCHMARKS below (name -> runner returning (markdown, raw dict)): the /v1 proxy
latency side by side with LiteLLM's proxy, web chat prompts/s, open SSE streams, webhooks, schedules,
throughput with 1-3 replicas on one Redis, batch items/s, spoken answers (text end to first audio
byte, cache hits), tool hops, lexical knowledge search (ingest, search latency, memory) beside bm25s,
semantic search (local embedding rate, vector and hybrid query latency), shell files (bash round
trip, 100 MB transfers), and the input policy check beside the model call.
Results go to bench/results/<name>-<timestamp>.json (git-ignored); copy the tables that matter,
with the command and the machine, into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    batch,
    governance,
    knowledge,
    profile,
    proxy_latency,
    replicas,
    schedules,
    servers,
    shell,
    speech,
    tools_hops,
    vectors,
    webchat,
    webhooks,
)

RESULTS = servers.RESULTS

Runner = Callable[[argparse.Namespace], tuple[str, dict[str, Any]]]


def _proxy_latency(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = proxy_latency.run(quick=args.quick, with_profile=not args.no_profile, out_dir=RESULTS, log=_log,
                               with_litellm=not args.no_litellm)
    text = [proxy_latency.table(result)]
    text += [profile.report(summary) for summary in result.profiles]
    text.append(f"\n({result.seconds} s)")
    return "\n".join(text), asdict(result)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _webchat_prompts(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = webchat.run_prompts(quick=args.quick, log=_log, with_profile=not args.no_profile, out_dir=RESULTS)
    text = [webchat.prompts_table(result), *(profile.report(summary) for summary in result.profiles)]
    text.append(f"\n({result.seconds} s)")
    return "\n".join(text), asdict(result)


def _webchat_streams(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = webchat.run_streams(quick=args.quick, log=_log)
    return f"{webchat.streams_table(result)}\n\n({result.seconds} s)", asdict(result)


def _webhooks(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = webhooks.run(quick=args.quick, log=_log)
    return f"{webhooks.table(result)}\n\n({result.seconds} s)", asdict(result)


def _schedules(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = schedules.run(quick=args.quick, log=_log)
    return f"{schedules.table(result)}\n\n({result.seconds} s)", asdict(result)


def _speech(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return speech.run(quick=args.quick)


def _replicas(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = replicas.run(quick=args.quick, log=_log)
    return f"{replicas.table(result)}\n\n({result.seconds} s)", asdict(result)


def _batch(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = batch.run(quick=args.quick, log=_log)
    return f"{batch.table(result)}\n\n({result.seconds} s)", asdict(result)


def _tools_hops(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(tools_hops.run(100 if args.quick else 500))
    return f"{tools_hops.table(result)}\n\n({result.calls} calls each)", asdict(result)


def _vectors(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(vectors.run(10_000 if args.quick else 100_000, 50 if args.quick else 200, with_qdrant=False,
                                     embed_docs=64 if args.quick else vectors.EMBED_DOCS))
    return f"{vectors.table(result)}\n\n({result.seconds} s)", asdict(result)
def _knowledge(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = knowledge.run(20_000 if args.quick else 100_000)
    return f"{knowledge.table(result)}\n\n({result.seconds} s)", asdict(result)


def _shell(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    results = shell.run(runs=20 if args.quick else 50, size_mb=20 if args.quick else 100)
    return shell.table(results), results


def _governance(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = asyncio.run(governance.run(15 if args.quick else 40, 0.2))
    return governance.table(result), asdict(result)


BENCHMARKS: dict[str, Runner] = {
    "proxy_latency": _proxy_latency,
    "webchat_prompts": _webchat_prompts,
    "webchat_streams": _webchat_streams,
    "webhooks": _webhooks,
    "schedules": _schedules,
    "replicas": _replicas,
    "batch": _batch,
    "speech": _speech,
    "tools_hops": _tools_hops,
    "vectors": _vectors,
    "knowledge": _knowledge,
    "shell": _shell,
    "governance": _governance,
}


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
        "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description="Run botline's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests (a smoke run)")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy profiles")
    parser.add_argument("--no-litellm", action="store_true",
                        help="leave LiteLLM out of proxy_latency (installed into bench/.litellm-venv on first use)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    host = machine()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"# botline benchmarks {stamp}\n")
    print(f"machine: {host['cpus']} CPUs, {host['cpu_model']}, Python {host['python']}, "
          f"load average at start {', '.join(f'{x:.2f}' for x in host['loadavg_at_start'])}\n")
    started = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        print(f"## {name}\n", flush=True)
        markdown, raw = BENCHMARKS[name](args)
        print(markdown + "\n", flush=True)
        path = RESULTS / f"{name}-{stamp}.json"
        path.write_text(json.dumps({"machine": host, "command": sys.argv, **raw}, indent=2, default=str))
        print(f"raw results: {path.relative_to(servers.ROOT)}\n", flush=True)
    print(f"all done in {time.perf_counter() - started:.0f} s; load average at end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
