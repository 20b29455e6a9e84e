"""Public addresses outlive the replica that made them: without `shell.link_secret` the signing key is
generated once and kept in the Store, so another replica (Redis) and the same server after a restart
(SQLite) open them; a configured secret still overrides it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.shell.conftest import USER
from tests.shell.test_files_api import upload
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server


async def public_url(server: RunningServer, path: str = "report.csv") -> str:
    await upload(server, path, b"a,b\n1,2\n")
    status, body = await server.call("GET", "/api/v1/shell/io/file/public-address", params={"path": path},
                                     headers=USER)
    assert status == 200, body
    return str(body["data"]["publicUrl"])


async def opens(server: RunningServer, url: str) -> bool:
    """Whether `server` serves the address made elsewhere (same path, this server's origin)."""
    path = url.split("/api/", 1)[1]
    async with server.http.get(f"{server.url}/api/{path}") as response:
        return response.status == 200 and await response.read() == b"a,b\n1,2\n"


def settings(storage_url: str, shell_path: Path, **shell: Any) -> Any:
    return make_settings(storage_url, storage={"url": storage_url, **shell.pop("storage", {})},
                         shell={"local_path": str(shell_path), **shell})


async def test_an_address_still_opens_after_a_restart(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'botline.db'}"
    async with running_server(settings(storage, tmp_path / "shell")) as first:
        url = await public_url(first)
    async with running_server(settings(storage, tmp_path / "shell")) as again:
        assert await opens(again, url)


async def test_an_address_made_on_one_replica_opens_on_another(redis_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    shared = {"storage": {"redis_prefix": prefix}}
    try:
        async with running_server(settings(redis_url, tmp_path / "shell", **shared)) as one, \
                running_server(settings(redis_url, tmp_path / "shell", **shared)) as two:
            assert await opens(two, await public_url(one))
    finally:
        await delete_prefix(redis_url, prefix)


async def test_a_configured_secret_overrides_the_stored_one(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'botline.db'}"
    async with running_server(settings(storage, tmp_path / "shell")) as stored_key:
        stored_url = await public_url(stored_key)
    async with running_server(settings(storage, tmp_path / "shell", link_secret="operator-secret-1")) as server:
        assert not await opens(server, stored_url)
        configured_url = await public_url(server)
    async with running_server(settings(storage, tmp_path / "shell", link_secret="operator-secret-1")) as again:
        assert await opens(again, configured_url)
