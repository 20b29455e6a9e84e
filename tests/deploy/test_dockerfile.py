"""deploy/Dockerfile: multi-stage, slim, unprivileged, and its HEALTHCHECK really probes botline.

Docker cannot run in the test environment, so the image is not built here; the health check's
command is run as-is against a live botline instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

from botline.config import Settings
from tests.deploy.files import dockerfile_environment, dockerfile_instructions, runtime_stage
from tests.support.server import RunningServer, free_port


def _one(keyword: str) -> str:
    (found,) = [i.arguments for i in runtime_stage() if i.keyword == keyword]
    return found


def _healthcheck_command() -> list[str]:
    arguments = _one("HEALTHCHECK")
    command = json.loads(arguments[arguments.index("CMD ") + 4 :])
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_the_image_is_built_in_one_stage_and_run_from_a_slim_one() -> None:
    stages = [i.arguments for i in dockerfile_instructions() if i.keyword == "FROM"]
    assert len(stages) >= 2
    assert "-slim" in stages[-1]
    assert any(i.arguments.startswith("--from=") for i in runtime_stage() if i.keyword == "COPY")


def test_the_image_runs_botline_serve_as_an_unprivileged_user() -> None:
    user = _one("USER").split(":")[0]
    assert user not in {"root", "0"}
    assert json.loads(_one("ENTRYPOINT")) + json.loads(_one("CMD")) == ["botline", "serve"]


def test_the_image_listens_on_every_interface_at_the_default_port() -> None:
    assert dockerfile_environment()["BOTLINE_SERVER__HOST"] == "0.0.0.0"
    assert _one("EXPOSE") == str(Settings().server.port)


def test_no_secret_is_baked_into_the_image() -> None:
    secret_like = re.compile(r"(KEYS?|SECRET|PASSWORD|TOKEN)$")
    assert not {name for name in dockerfile_environment() if secret_like.search(name)}
    copied = " ".join(i.arguments for i in dockerfile_instructions() if i.keyword in {"COPY", "ADD"})
    assert ".env" not in copied and "config.yaml" not in copied


async def _run_healthcheck(port: int) -> int:
    command = _healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command[1:], env={"BOTLINE_SERVER__PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def test_the_healthcheck_passes_against_a_serving_botline(server: RunningServer) -> None:
    assert await _run_healthcheck(int(server.url.rsplit(":", 1)[1])) == 0


async def test_the_healthcheck_fails_when_nothing_serves() -> None:
    assert await _run_healthcheck(free_port()) != 0

