"""A botline server whose shell files live on local disk or in S3 (moto's server on loopback, the real wire)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from botline.domain.clock import FrozenClock
from tests.support.server import RunningServer, free_port, make_settings, running_server

BUCKET = "botline-shell"
USER = {"X-Shell-User-Id": "user-1"}
START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    yield endpoint
    moto.stop()


def shell_settings(backend: str, tmp_path: Path, endpoint: str | None, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"local_path": str(tmp_path / "shell"), "scratch_path": str(tmp_path / "scratch"),
                                "storage": backend, **overrides}
    if backend == "s3":
        settings["s3"] = {"bucket": BUCKET, "prefix": f"t-{tmp_path.name}", "endpoint_url": endpoint,
                          "access_key_id": "test", "secret_access_key": "test"}
    return settings


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def shell_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def shell_clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
async def shell_server(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                       shell_overrides: dict[str, Any], shell_clock: FrozenClock) -> AsyncIterator[RunningServer]:
    endpoint = request.getfixturevalue("s3_endpoint") if backend == "s3" else None
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}",
                             shell=shell_settings(backend, tmp_path, endpoint, **shell_overrides))
    async with running_server(settings, clock=shell_clock) as running:
        yield running


@pytest.fixture
def traversable(tmp_path: Path) -> Iterator[Path]:
    """A folder every user may traverse: when the tests run as root the sandbox runs as another uid, which
    must reach the users' files (pytest's own folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="botline-shell-", dir="/tmp"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
