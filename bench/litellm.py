"""LiteLLM's proxy as a contender in bench.proxy_latency: its own venv, a config, one worker on loopback.

`ensure()` creates bench/.litellm-venv (git-ignored) with `pip install 'litellm[proxy]==VERSION'` the
first time (about a minute with a warm pip cache) and returns why not when that fails, so `make bench`
carries on with botline alone. `proxy()` starts `litellm --config ... --num_workers 1` on 127.0.0.1
with a master key and one model, `bench` (the same name clients use for botline's gateway), pointing
at the same fake upstream as botline. Nothing may call the internet: the model cost map is read from
the package (LITELLM_LOCAL_MODEL_COST_MAP), usage telemetry is off by default since 1.107 (no
endpoint set), no database, no callbacks. LITELLM_LOG=ERROR makes uvicorn skip its per-request
access-log line (botline runs with `logging.level: WARNING`); LITELLM_MODE=PRODUCTION stops LiteLLM
from loading a `.env` from the working directory.

    .venv/bin/python -m bench.litellm     # create the venv if needed, start the proxy once, one request
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from bench import servers

VERSION = os.environ.get("BENCH_LITELLM_VERSION", "1.108.7")
"""The version the published figures were measured with (pinned; override to compare another)."""
VENV = servers.ROOT / "bench" / ".litellm-venv"
MASTER_KEY = "sk-litellm-bench-0123456789abcdefghijklmnopqrstuvwxyz"
INSTALL_TIMEOUT = 900.0
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOG": "ERROR",
}
DISABLED = "BENCH_LITELLM"
"""Set to 0 to leave LiteLLM out (botline is then measured alone)."""


@dataclass(frozen=True)
class Availability:
    executable: Path | None
    reason: str
    """Why LiteLLM is not measured (empty when it is)."""


def _installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() if probe.returncode == 0 else None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return lines[-1][:300] if lines else "(no output)"


def ensure(log: Callable[[str], None] = print, *, install: bool = True) -> Availability:
    """The LiteLLM executable, installing VERSION into VENV first if needed; or why it is unavailable."""
    if os.environ.get(DISABLED) == "0":
        return Availability(None, f"left out (${DISABLED}=0)")
    executable = VENV / "bin" / "litellm"
    installed = _installed_version()
    if installed == VERSION and executable.exists():
        return Availability(executable, "")
    if not install:
        return Availability(None, f"{VENV} has litellm {installed or 'nothing'}, not {VERSION}")
    log(f"  installing litellm[proxy]=={VERSION} into {VENV.relative_to(servers.ROOT)} (once; about a minute)")
    try:
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120)
        pip = subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={VERSION}"],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return Availability(None, f"could not create the venv: {type(exc).__name__}: {exc}")
    if pip.returncode != 0:
        return Availability(None, f"pip install failed ({pip.returncode}): {_last_line(pip.stderr or pip.stdout)}")
    if not executable.exists():
        return Availability(None, f"pip installed litellm but {executable} is missing")
    return Availability(executable, "")


def config(workdir: Path, upstream: servers.Server) -> Path:
    """One model, `bench` -> the fake upstream's `fake-model` over the OpenAI API; a master key; nothing else."""
    document = {
        "model_list": [{
            "model_name": servers.GATEWAY_SLUG,
            "litellm_params": {"model": f"openai/{servers.UPSTREAM_MODEL}", "api_base": f"{upstream.base_url}/v1",
                               "api_key": "sk-upstream-unused"},
        }],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"set_verbose": False},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@contextlib.contextmanager
def proxy(workdir: Path, upstream: servers.Server, executable: Path) -> Iterator[servers.Server]:
    """`litellm --config ... --num_workers 1` on a free loopback port, waited for with GET /v1/models."""
    port = servers.free_port()
    argv = [str(executable), "--config", str(config(workdir, upstream)), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    with servers.spawn("litellm", argv, port, workdir, ENV) as server:
        servers.wait_http(server, "/v1/models", {"Authorization": f"Bearer {MASTER_KEY}"})
        yield server


def _smoke(server: servers.Server) -> str:
    body = orjson.dumps({"model": servers.GATEWAY_SLUG, "messages": [{"role": "user", "content": "ping"}]})
    request = urllib.request.Request(f"{server.base_url}/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(orjson.loads(answer.read())["choices"][0]["message"]["content"])


def main() -> None:
    availability = ensure()
    if availability.executable is None:
        sys.exit(f"LiteLLM unavailable: {availability.reason}")
    with servers.workdir("botline-bench-litellm-") as tmp, servers.fake_llm(tmp) as fake, \
            proxy(tmp, fake, availability.executable) as server:
        print(f"litellm {VERSION} pid {server.pid} on {server.base_url} answered: {_smoke(server)!r}")


if __name__ == "__main__":
    main()
