"""`make bench`: every benchmark in turn, a markdown summary on stdout, raw results in bench/results/.

    .venv/bin/python -m bench.run_all [--quick] [--no-profile] [--only NAME ...]

Benchmarks register in BENCHMARKS below (name -> runner returning (markdown, raw dict)); later issues
add theirs (web-chat prompts/s, SSE streams, webhooks, schedules, replicas, LiteLLM side by side).
Results go to bench/results/<name>-<timestamp>.json (git-ignored); copy the tables that matter,
with the command and the machine, into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import profile, proxy_latency, servers

RESULTS = servers.ROOT / "bench" / "results"

Runner = Callable[[argparse.Namespace], tuple[str, dict[str, Any]]]


def _proxy_latency(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    result = proxy_latency.run(quick=args.quick, with_profile=not args.no_profile, out_dir=RESULTS,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    text = [proxy_latency.table(result)]
    text += [profile.report(summary) for summary in result.profiles]
    text.append(f"\n({result.seconds} s)")
    return "\n".join(text), asdict(result)


BENCHMARKS: dict[str, Runner] = {
    "proxy_latency": _proxy_latency,
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
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    host = machine()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"# botline benchmarks {stamp}\n")
    print(f"machine: {host['cpus']} CPUs, {host['cpu_model']}, Python {host['python']}, "
          f"load average at start {', '.join(f'{x:.2f}' for x in host['loadavg_at_start'])}\n")
    for name in args.only or list(BENCHMARKS):
        print(f"## {name}\n", flush=True)
        markdown, raw = BENCHMARKS[name](args)
        print(markdown + "\n", flush=True)
        path = RESULTS / f"{name}-{stamp}.json"
        path.write_text(json.dumps({"machine": host, "command": sys.argv, **raw}, indent=2))
        print(f"raw results: {path.relative_to(servers.ROOT)}\n", flush=True)


if __name__ == "__main__":
    main()
