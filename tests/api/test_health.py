"""The probes (review finding L5: /readyz is public and must not describe the infrastructure)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.redis_server import OwnRedis
from tests.support.server import make_settings, running_server


async def test_l5_readyz_says_the_storage_is_down_without_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with OwnRedis(tmp_path) as redis:
        async with running_server(make_settings(redis.url)) as server:
            assert (await server.call("GET", "/readyz")) == (200, {"status": "ok"})
            redis.kill()
            with caplog.at_level(logging.WARNING, logger="botline.api.health"):
                status, body = await server.call("GET", "/readyz")
            redis.start()

    assert status == 503
    assert body == {"status": "unavailable", "message": "The storage does not answer."}
    assert str(redis.port) in caplog.text  # the operator still finds out where it failed: in the log
