"""deploy/nginx/botline.conf: valid for nginx, streams SSE unbuffered, keeps /metrics private.

The static checks always run; the ones that need nginx skip with the reason when it is missing
(`.ci/run` installs Debian's nginx). Those run a temporary copy whose upstreams are 127.0.0.1 and
whose listen port is a free loopback one (compose's host names do not resolve here; see nginx.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from botline.config import Settings
from tests.conftest import create_gateway
from tests.deploy.files import NGINX_CONF, nginx_blocks, nginx_setting
from tests.deploy.nginx import check, nginx_binary, running_nginx, write_config
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

STREAMED_PATHS = ("/v1/chat/completions", "/api/v1/public/chat-clients/some-access-key")
MEBIBYTE = 1024 * 1024


@pytest.fixture
def nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does it): config not run")
    return binary


@pytest.fixture
async def proxy(nginx: str, tmp_path: Path, server: RunningServer) -> AsyncIterator[str]:
    async with running_nginx(nginx, tmp_path, int(server.url.rsplit(":", 1)[1])) as url:
        yield url


def _blocks() -> dict[str, list[list[str]]]:
    return nginx_blocks(NGINX_CONF.read_text(encoding="utf-8"))


def _location_for(path: str) -> list[list[str]]:
    """The block nginx would pick for `path` among this file's locations (regex before the `/` prefix)."""
    for name, block in _blocks().items():
        if name.startswith("location ~ ") and re.search(name.removeprefix("location ~ "), path):
            return block
    return _blocks()["location /"]


@pytest.mark.parametrize("path", STREAMED_PATHS)
def test_streamed_paths_are_not_buffered_compressed_or_cut_short(path: str) -> None:
    block = _location_for(path)
    assert nginx_setting(block, "proxy_buffering") == ["off"]
    assert nginx_setting(block, "gzip") == ["off"]
    assert nginx_setting(block, "proxy_read_timeout") == ["1h"]


def test_upstream_speaks_http_1_1_with_forwarded_headers_and_no_stickiness() -> None:
    blocks = _blocks()
    server = blocks["server"]
    assert nginx_setting(server, "proxy_http_version") == ["1.1"]
    forwarded = {d[1] for d in server if d[0] == "proxy_set_header"}
    assert {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host"} <= forwarded
    upstream = blocks["upstream botline"]
    assert len([d for d in upstream if d[0] == "server"]) == 2
    assert not {"ip_hash", "hash", "sticky"} & {d[0] for d in upstream}, "any replica takes any request"


def test_body_limit_matches_botline_max_body_bytes() -> None:
    (limit,) = nginx_setting(_blocks()["server"], "client_max_body_size")
    assert limit.endswith("m")
    assert int(limit.removesuffix("m")) * MEBIBYTE == Settings().server.max_body_bytes


async def test_nginx_accepts_the_config(nginx: str, tmp_path: Path) -> None:
    status, output = await check(nginx, write_config(tmp_path, upstream_port=8080, listen_port=8081))
    assert status == 0, output
    assert "syntax is ok" in output


async def test_metrics_are_refused_through_the_proxy_while_health_passes(
    proxy: str, server: RunningServer
) -> None:
    async with server.http.get(proxy + "/metrics") as response:
        assert response.status == 403
    async with server.http.get(proxy + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_a_streamed_answer_reaches_the_client_while_the_model_is_still_writing(
    proxy: str, server: RunningServer, fake_llm: FakeLLM
) -> None:
    """The first delta arrives through nginx before the fake LLM has finished its answer.

    Proof without a stopwatch: the client hangs up right after the first delta, and the hang-up
    travels nginx -> botline -> the fake LLM as a cancelled request. A buffering proxy would hold
    the delta until the whole answer was written, and the fake would count no cancellation.
    """
    gateway_id = await create_gateway(server, fake_llm)
    fake_llm.script(Reply(text="one two three four five", chunk_delay=3.0))
    body = {"model": gateway_id, "stream": True, "messages": [{"role": "user", "content": "count"}]}
    async with server.http.post(proxy + "/v1/chat/completions", json=body, headers=server.headers()) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in response.headers
        first = await _first_delta(response)
    assert first == "one "
    await fake_llm.wait_for_cancelled(1)


async def _first_delta(response: aiohttp.ClientResponse) -> str:
    async for line in response.content:
        if line.startswith(b"data: {"):
            delta = orjson.loads(line.removeprefix(b"data: "))["choices"][0]["delta"]
            if delta.get("content"):
                return str(delta["content"])
    raise AssertionError("the stream ended without a text delta")
