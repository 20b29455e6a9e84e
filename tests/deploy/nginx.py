"""deploy/nginx/botline.conf run for real: a throwaway nginx as the test user, on loopback ports.

The shipped file names the compose services (botline-1:8080, botline-2:8080), which do not resolve
outside compose, and listens on port 80, which a test may not bind. A temporary copy points both
upstream servers at 127.0.0.1:<the test's botline> and listens on 127.0.0.1:<free port>; every
other line is the shipped one. nginx's own main context (pid, logs, temp paths) lives in tmp_path.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.deploy.files import NGINX_CONF
from tests.support.processes import stop_process
from tests.support.server import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CONNECT_RETRY_SECONDS = 0.02
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def local_copy(upstream_port: int, listen_port: int) -> str:
    """The shipped config with loopback upstreams and listen address instead of compose's."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    text, upstreams = re.subn(r"server botline-\d+:\d+", f"server 127.0.0.1:{upstream_port}", text)
    text, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", text)
    assert upstreams >= 2 and listens == 1, "botline.conf changed shape: update tests/deploy/nginx.py"
    return text


def write_config(prefix: Path, upstream_port: int, listen_port: int) -> Path:
    """nginx.conf in `prefix` that includes the local copy of botline.conf; returns its path."""
    site = prefix / "botline.conf"
    site.write_text(local_copy(upstream_port, listen_port), encoding="utf-8")
    temp_paths = "\n".join(f"    {name}_temp_path {prefix / name};" for name in _TEMP_PATHS)
    main = prefix / "nginx.conf"
    main.write_text(
        # As root, workers would otherwise run as nobody and could not reach tmp_path.
        f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"
        f"pid {prefix / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        "daemon off;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}\n"
        f"    include {site};\n"
        "}\n",
        encoding="utf-8",
    )
    return main


async def check(binary: str, config: Path) -> tuple[int, str]:
    """`nginx -t`: (exit status, its output)."""
    process = await asyncio.create_subprocess_exec(
        binary, "-t", "-p", str(config.parent), "-c", str(config), "-e", "stderr",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


@asynccontextmanager
async def running_nginx(binary: str, prefix: Path, upstream_port: int) -> AsyncIterator[str]:
    """nginx in front of 127.0.0.1:upstream_port; yields its base URL. Stopped (and waited for) on exit."""
    port = free_port()
    config = write_config(prefix, upstream_port, port)
    process = await asyncio.create_subprocess_exec(
        binary, "-p", str(prefix), "-c", str(config), "-e", "stderr",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_listening(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop_process(process, STOP_TIMEOUT)


async def _wait_listening(process: asyncio.subprocess.Process, port: int) -> None:
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            if process.returncode is not None:
                assert process.stderr is not None
                raise AssertionError(f"nginx exited: {(await process.stderr.read()).decode()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            writer.close()
            await writer.wait_closed()
            return
