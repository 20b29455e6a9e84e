"""Local disk: what the bash tool (or anything else) may leave in a user's tree never leads out of it.
Symlinks, FIFOs and symlinked directories are planted directly on disk, as a sandboxed command would."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botline.shell import UserRoot
from botline.shell.local import LocalFileStore
from tests.memory.helpers import admin_id
from tests.shell.conftest import USER, shell_settings
from tests.shell.test_files_api import download, listing, upload
from tests.support.server import RunningServer, make_settings, running_server


@pytest.fixture
async def local_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", shell=shell_settings("local", tmp_path, None))
    async with running_server(settings) as running:
        yield running


async def user_dir(server: RunningServer, tmp_path: Path, user: str = "user-1") -> Path:
    return LocalFileStore(tmp_path / "shell").files_dir(UserRoot(await admin_id(server), user))


async def test_a_symlink_to_a_host_file_is_neither_listed_nor_served(local_server: RunningServer,
                                                                    tmp_path: Path) -> None:
    home = await user_dir(local_server, tmp_path)
    (home / "passwd").symlink_to("/etc/passwd")
    (home / "host").symlink_to("/")
    assert (await listing(local_server))[1]["entries"] == []
    assert (await download(local_server, "passwd"))[0] == 404
    assert (await download(local_server, "host/etc/passwd"))[0] == 404
    assert (await listing(local_server, "host/etc"))[0] == 404
    status, _ = await local_server.call("GET", "/api/v1/shell/io/file/details", params={"path": "passwd"},
                                        headers=USER)
    assert status == 404
    status, _ = await local_server.call("GET", "/api/v1/shell/io/file/public-address", params={"path": "passwd"},
                                        headers=USER)
    assert status == 404


async def test_writing_through_a_symlinked_directory_is_refused_and_writes_nothing_outside(
    local_server: RunningServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    home = await user_dir(local_server, tmp_path)
    (home / "out").symlink_to(outside)
    assert (await upload(local_server, "out/planted.txt", b"x"))[0] == 409
    status, _ = await local_server.call("POST", "/api/v1/shell/io/directory", params={"path": "out/sub"},
                                        headers=USER)
    assert status == 409
    assert list(outside.iterdir()) == []


async def test_deleting_a_symlink_removes_the_link_never_its_target(local_server: RunningServer,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    home = await user_dir(local_server, tmp_path)
    (home / "link").symlink_to(target)
    (home / "file-link").symlink_to(target / "keep.txt")
    assert (await local_server.call("DELETE", "/api/v1/shell/io/directory", params={"path": "link"},
                                    headers=USER))[0] == 404
    assert (await local_server.call("DELETE", "/api/v1/shell/io/file", params={"path": "file-link"},
                                    headers=USER))[0] == 200
    (home / "dir").mkdir()
    (home / "dir" / "inner-link").symlink_to(target)
    assert (await local_server.call("DELETE", "/api/v1/shell/io/directory", params={"path": "dir"},
                                    headers=USER))[0] == 200
    assert (target / "keep.txt").read_text() == "keep"


async def test_an_upload_over_a_symlink_replaces_the_link_not_its_target(local_server: RunningServer,
                                                                       tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("original")
    home = await user_dir(local_server, tmp_path)
    (home / "note.txt").symlink_to(target)
    assert (await upload(local_server, "note.txt", b"new"))[0] == 200
    assert target.read_text() == "original"
    assert not (home / "note.txt").is_symlink() and (home / "note.txt").read_bytes() == b"new"


async def test_a_fifo_is_not_served_and_does_not_hang(local_server: RunningServer, tmp_path: Path) -> None:
    home = await user_dir(local_server, tmp_path)
    os.mkfifo(home / "pipe")
    assert (await download(local_server, "pipe"))[0] == 404
    assert (await listing(local_server))[1]["entries"] == []
