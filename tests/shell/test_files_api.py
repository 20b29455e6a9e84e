"""The Shell I/O API (seed section "Shell I/O") on both storage backends: shapes, statuses, paths, quotas,
public addresses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from botline.domain.clock import FrozenClock
from tests.shell.conftest import USER
from tests.support.server import RunningServer

CSV = b"name,age\nana,31\nbruno,42\n"


async def upload(server: RunningServer, path: str, data: Any, user: dict[str, str] = USER) -> tuple[int, Any]:
    return await server.call("POST", "/api/v1/shell/io/file", params={"path": path}, data=data, headers=user)


async def listing(server: RunningServer, path: str = "/", user: dict[str, str] = USER) -> tuple[int, Any]:
    return await server.call("GET", "/api/v1/shell/io/listing", params={"path": path}, headers=user)


async def download(server: RunningServer, path: str, user: dict[str, str] = USER) -> tuple[int, bytes, Any]:
    async with server.http.get(server.url + "/api/v1/shell/io/file", params={"path": path},
                               headers={**server.headers(), **user}) as response:
        return response.status, await response.read(), response.headers


async def test_an_uploaded_file_is_listed_downloaded_and_described(shell_server: RunningServer) -> None:
    status, body = await upload(shell_server, "/data.csv", CSV)
    assert status == 200 and body["message"] == "File uploaded successfully."
    status, body = await listing(shell_server)
    assert status == 200
    [entry] = body["entries"]
    assert entry["name"] == "data.csv" and entry["isDirectory"] is False and entry["size"] == len(CSV)
    assert entry["lastModifiedUtc"].endswith("Z") and entry["createdAtUtc"].endswith("Z")
    status, content, headers = await download(shell_server, "data.csv")
    assert status == 200 and content == CSV
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith('attachment; filename="data.csv"')
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, body = await shell_server.call("GET", "/api/v1/shell/io/file/details", params={"path": "data.csv"},
                                           headers=USER)
    assert status == 200
    assert body["data"] | {"createdAtUtc": "", "lastModifiedUtc": ""} == {
        "name": "data.csv", "size": len(CSV), "mimeType": "text/csv", "isPlainText": True,
        "createdAtUtc": "", "lastModifiedUtc": ""}


async def test_binary_files_are_not_plain_text(shell_server: RunningServer) -> None:
    await upload(shell_server, "blob", b"\x89PNG\r\n\x1a\n\0\0\0")
    _, body = await shell_server.call("GET", "/api/v1/shell/io/file/details", params={"path": "blob"}, headers=USER)
    assert body["data"]["isPlainText"] is False and body["data"]["mimeType"] == "application/octet-stream"


async def test_a_multipart_upload_keeps_only_the_files_bytes(shell_server: RunningServer) -> None:
    form = aiohttp.FormData()
    form.add_field("file", CSV, filename="ignored.csv", content_type="text/csv")
    assert (await upload(shell_server, "reports/data.csv", form))[0] == 200
    assert (await download(shell_server, "reports/data.csv"))[1] == CSV


async def test_directories_are_made_listed_and_deleted_with_their_contents(shell_server: RunningServer) -> None:
    assert (await shell_server.call("POST", "/api/v1/shell/io/directory", params={"path": "empty"},
                                    headers=USER))[0] == 200
    await upload(shell_server, "reports/2026/q4.txt", b"q4")
    _, body = await listing(shell_server)
    assert [(e["name"], e["isDirectory"], e["size"]) for e in body["entries"]] == [
        ("empty", True, None), ("reports", True, None)]
    _, body = await listing(shell_server, "reports/2026")
    assert [e["name"] for e in body["entries"]] == ["q4.txt"]
    status, _ = await shell_server.call("DELETE", "/api/v1/shell/io/directory", params={"path": "reports"},
                                        headers=USER)
    assert status == 200
    assert (await download(shell_server, "reports/2026/q4.txt"))[0] == 404
    assert (await listing(shell_server, "reports"))[0] == 404
    _, body = await listing(shell_server)
    assert [e["name"] for e in body["entries"]] == ["empty"]


async def test_the_seeds_error_statuses(shell_server: RunningServer) -> None:
    await upload(shell_server, "a.txt", b"a")
    call = shell_server.call
    assert (await call("DELETE", "/api/v1/shell/io/directory", params={"path": "/"}, headers=USER))[0] == 400
    assert (await call("DELETE", "/api/v1/shell/io/directory", params={"path": "nope"}, headers=USER))[0] == 404
    assert (await call("DELETE", "/api/v1/shell/io/file", params={"path": "nope"}, headers=USER))[0] == 404
    assert (await call("GET", "/api/v1/shell/io/file/details", params={"path": "nope"}, headers=USER))[0] == 404
    assert (await call("GET", "/api/v1/shell/io/file/public-address", params={"path": "nope"},
                       headers=USER))[0] == 404
    assert (await download(shell_server, "nope"))[0] == 404
    assert (await listing(shell_server, "nope"))[0] == 404
    assert (await call("DELETE", "/api/v1/shell/io/file", params={"path": "a.txt"}, headers=USER))[0] == 200
    assert (await download(shell_server, "a.txt"))[0] == 404
    status, body = await call("GET", "/api/v1/shell/io/listing", params={"path": "/"})
    assert status == 400 and "X-Shell-User-Id" in body["message"]
    status, body = await call("GET", "/api/v1/shell/io/file", headers=USER)
    assert status == 400 and "path" in body["message"]


async def test_a_file_and_a_directory_cannot_share_a_name(shell_server: RunningServer) -> None:
    await upload(shell_server, "a", b"file")
    assert (await upload(shell_server, "a/b.txt", b"x"))[0] == 409
    await shell_server.call("POST", "/api/v1/shell/io/directory", params={"path": "d"}, headers=USER)
    assert (await upload(shell_server, "d", b"x"))[0] == 409


@pytest.mark.parametrize("path", ["../secret", "a/../../etc/passwd", "a\0b", "a\\..\\b", "x" * 256 + ".txt",
                                  "/".join(["d"] * 33), "tab\there"])
async def test_paths_that_could_leave_the_root_or_that_no_filesystem_holds_are_refused(
    shell_server: RunningServer, path: str
) -> None:
    status, body = await upload(shell_server, path, b"x")
    assert status == 400 and body["message"].startswith("Invalid value for path"), body
    assert (await listing(shell_server))[1]["entries"] == []


async def test_bytes_that_are_not_utf8_never_reach_the_filesystem(shell_server: RunningServer) -> None:
    for raw in ("%FF%FE.txt", "%ED%A0%80", "..%2F..%2Fetc%2Fpasswd", "%2E%2E/x"):
        url = URL(f"{shell_server.url}/api/v1/shell/io/file?path={raw}", encoded=True)
        async with shell_server.http.post(url, data=b"x", headers={**shell_server.headers(), **USER}) as response:
            assert response.status in (200, 400), raw
    names = [e["name"] for e in (await listing(shell_server))[1]["entries"]]
    assert all(name.isprintable() and "/" not in name and name != ".." for name in names), names


async def test_absolute_and_dotted_spellings_name_the_same_file(shell_server: RunningServer) -> None:
    await upload(shell_server, "/docs/./a.txt", b"one")
    assert (await download(shell_server, "docs//a.txt"))[1] == b"one"
    assert (await download(shell_server, "./docs/a.txt"))[1] == b"one"


async def test_each_shell_user_sees_only_their_own_files(shell_server: RunningServer) -> None:
    await upload(shell_server, "mine.txt", b"secret")
    other = {"X-Shell-User-Id": "user-2"}
    assert (await listing(shell_server, user=other))[1]["entries"] == []
    assert (await download(shell_server, "mine.txt", user=other))[0] == 404
    tricky = {"X-Shell-User-Id": "../user-1"}
    assert (await download(shell_server, "mine.txt", user=tricky))[0] == 404


@pytest.mark.parametrize("shell_overrides", [{"max_file_bytes": 4096}])
async def test_a_file_over_the_size_limit_is_413_and_leaves_nothing(shell_server: RunningServer) -> None:
    status, body = await upload(shell_server, "big.bin", b"x" * 5000)
    assert status == 413 and "4096" in body["message"]

    async def unsized() -> Any:
        for _ in range(5):
            yield b"x" * 1000

    assert (await upload(shell_server, "big.bin", unsized()))[0] == 413
    assert (await listing(shell_server))[1]["entries"] == []


@pytest.mark.parametrize("shell_overrides", [{"user_quota_bytes": 3000, "account_quota_bytes": 5000}])
async def test_quotas_answer_507_per_user_then_per_account(shell_server: RunningServer) -> None:
    assert (await upload(shell_server, "one", b"x" * 2000))[0] == 200
    status, body = await upload(shell_server, "two", b"x" * 2000)
    assert status == 507 and "Delete files first" in body["message"]
    other = {"X-Shell-User-Id": "user-2"}
    assert (await upload(shell_server, "one", b"x" * 2000, user=other))[0] == 200
    assert (await upload(shell_server, "two", b"x" * 1500, user=other))[0] == 507  # the account holds 4000 of 5000
    await shell_server.call("DELETE", "/api/v1/shell/io/file", params={"path": "one"}, headers=USER)
    assert (await upload(shell_server, "two", b"x" * 900, user=other))[0] == 200


async def test_a_public_address_downloads_without_a_key_until_it_expires(
    shell_server: RunningServer, shell_clock: FrozenClock
) -> None:
    await upload(shell_server, "report.html", b"<script>alert(1)</script>")
    status, body = await shell_server.call("GET", "/api/v1/shell/io/file/public-address",
                                           params={"path": "report.html"}, headers=USER)
    assert status == 200 and body["data"]["name"] == "report.html" and body["data"]["size"] == 25
    url = body["data"]["publicUrl"]
    assert url.startswith(shell_server.url + "/api/v1/public/ext-res/file/")
    async with shell_server.http.get(url) as response:
        assert response.status == 200 and await response.read() == b"<script>alert(1)</script>"
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in response.headers["Content-Security-Policy"]
    token = url.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    async with shell_server.http.get(url.replace(token, forged)) as response:
        assert response.status == 404
    shell_clock.advance(timedelta(hours=1, seconds=1))
    async with shell_server.http.get(url) as response:
        assert response.status == 404
