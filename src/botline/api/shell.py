"""Shell I/O (seed section "Shell I/O"): each account's end users' sandbox files, scoped by X-Shell-User-Id.

Uploads are read from the socket in chunks straight into storage (raw body or the first file part of a
multipart body), so `server.max_body_bytes` does not apply to them: `shell.max_file_bytes` does. Every
download, public or not, is served as an attachment with `application/octet-stream` and `nosniff`, so
a user's file is never rendered as a page on botline's origin.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from botline.api.http import ApiError, json_response, query_text
from botline.api.openapi import Access, Answer, documented
from botline.api.state import principal, services
from botline.domain.limits import NAME_MAX
from botline.shell import InvalidPath, ShellError, ShellPath, UserRoot
from botline.shell.files import ShellFiles
from botline.shell.links import PUBLIC_PREFIX
from botline.shell.paths import PATH_MAX
from botline.shell.storage import CHUNK_BYTES

routes = web.RouteTableDef()

USER_HEADER = "X-Shell-User-Id"
MULTIPART_OVERHEAD = 64 * 1024
"""Boundaries and part headers a multipart upload may add to the file's own size."""
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
PATH_QUERY = {"path": "The path inside the shell user's root (`/` is the root); `..` is refused."}
NOT_FOUND = {404: Answer("Not found.")}
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, no-store"}


def _root(request: web.Request) -> UserRoot:
    user = request.headers.get(USER_HEADER, "").strip()
    if not user:
        raise ApiError(400, f"The {USER_HEADER} header is required: it names the shell user whose files these are.")
    if len(user) > NAME_MAX or any(ord(c) < 32 for c in user):
        raise ApiError(400, f"The {USER_HEADER} header must be at most {NAME_MAX} printable characters.")
    return UserRoot(principal(request).account.id, user)


def _path(request: web.Request, *, default: str | None = None) -> ShellPath:
    raw = query_text(request, "path", default or "", max_length=PATH_MAX)
    if not raw.strip() and default is None:
        raise ApiError(400, "The path query parameter is required.")
    try:
        return ShellPath.parse(raw)
    except InvalidPath as exc:
        raise ApiError(400, f"Invalid value for path: {exc}.") from exc


def _files(request: web.Request) -> ShellFiles:
    return services(request).shell


def _fail(exc: ShellError) -> ApiError:
    return ApiError(exc.status, exc.message)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, BodyPartReader) and (part.filename is not None or part.name == "file"):
                while chunk := await part.read_chunk(CHUNK_BYTES):
                    yield chunk
                return
        raise ApiError(400, "The multipart body has no file part (a part with a filename, or named \"file\").")
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        yield chunk


def attachment_headers(name: str) -> dict[str, str]:
    fallback = UNSAFE_FILENAME.sub("_", name) or "file"
    return {**SAFE_HEADERS, "Content-Disposition": f"attachment; filename=\"{fallback}\"; "
                                                   f"filename*=UTF-8''{quote(name, safe='')}"}


async def stream_file(request: web.Request, files: ShellFiles, root: UserRoot, path: ShellPath) -> web.StreamResponse:
    entry = await files.store.stat(root, path)
    if entry is None or entry.is_directory:
        raise ApiError(404, "File not found.")
    response = web.StreamResponse(headers=attachment_headers(path.name))
    response.content_type = "application/octet-stream"
    response.content_length = entry.size
    async with aclosing(files.store.read(root, path)) as chunks:
        try:
            first = await anext(chunks, b"")
        except ShellError as exc:
            raise _fail(exc) from exc
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


@routes.get("/api/v1/shell/io/file")
@documented("Download a file of the shell sandbox (as an attachment).", query=PATH_QUERY, answers=NOT_FOUND,
            media_type="application/octet-stream")
async def download(request: web.Request) -> web.StreamResponse:
    return await stream_file(request, _files(request), _root(request), _path(request))


@routes.post("/api/v1/shell/io/file")
@documented("Upload a file (raw body or multipart) to the shell sandbox, creating missing directories.",
            query=PATH_QUERY, answers={413: Answer("Larger than shell.max_file_bytes (100 MB)."),
                                       507: Answer("A storage quota would be exceeded.")})
async def upload(request: web.Request) -> web.Response:
    root, path = _root(request), _path(request)
    files = _files(request)
    declared, envelope = request.content_length, 0
    if declared is not None and request.content_type.startswith("multipart/"):
        declared, envelope = max(declared - MULTIPART_OVERHEAD, 0), min(declared, MULTIPART_OVERHEAD)
    try:
        size = await files.upload(root, path, _body(request), declared, envelope=envelope)
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"message": "File uploaded successfully.", "data": {"name": path.name, "size": size}})


@routes.delete("/api/v1/shell/io/file")
@documented("Delete a file of the shell sandbox.", query=PATH_QUERY, answers=NOT_FOUND)
async def delete_file(request: web.Request) -> web.Response:
    try:
        await _files(request).store.delete_file(_root(request), _path(request))
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"message": "File deleted successfully."})


@routes.get("/api/v1/shell/io/listing")
@documented("List a directory of the shell sandbox.", query=PATH_QUERY, answers=NOT_FOUND)
async def listing(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        entries = await svc.shell.store.listing(_root(request), _path(request, default="/"),
                                             limit=svc.settings.shell.max_entries)
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"entries": [entry.wire() for entry in entries]})


@routes.post("/api/v1/shell/io/directory")
@documented("Create a directory (and its parents) in the shell sandbox.", query=PATH_QUERY)
async def make_directory(request: web.Request) -> web.Response:
    try:
        await _files(request).store.make_directory(_root(request), _path(request))
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"message": "Directory created successfully."})


@routes.delete("/api/v1/shell/io/directory")
@documented("Delete a directory and everything in it (never the root).", query=PATH_QUERY,
            answers={400: Answer("The root cannot be deleted."), **NOT_FOUND})
async def delete_directory(request: web.Request) -> web.Response:
    root, path = _root(request), _path(request)
    if path.is_root:
        raise ApiError(400, "The root directory cannot be deleted.")
    try:
        await _files(request).store.delete_directory(root, path)
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"message": "Directory deleted successfully."})


@routes.get("/api/v1/shell/io/file/details")
@documented("A file's size, times, MIME type and whether it is plain text.", query=PATH_QUERY, answers=NOT_FOUND)
async def details(request: web.Request) -> web.Response:
    try:
        found = await _files(request).details(_root(request), _path(request))
    except ShellError as exc:
        raise _fail(exc) from exc
    return json_response({"data": found.wire()})


@routes.get("/api/v1/shell/io/file/public-address")
@documented("A temporary, unguessable address that downloads the file without a key (shell.link_seconds).",
            query=PATH_QUERY, answers=NOT_FOUND)
async def public_address(request: web.Request) -> web.Response:
    svc = services(request)
    root, path = _root(request), _path(request)
    entry = await svc.shell.store.stat(root, path)
    if entry is None or entry.is_directory:
        raise ApiError(404, "File not found.")
    url = svc.shell.public_url(svc.settings.server.base_url, root, path, svc.clock.now())
    data: dict[str, Any] = {"name": path.name, "size": entry.size, "publicUrl": url}
    return json_response({"data": data})


@routes.get(PUBLIC_PREFIX + "{link}")
@documented("Download a file through its public address, until it expires.", access=Access.PUBLIC,
            answers=NOT_FOUND, media_type="application/octet-stream")
async def public_download(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    opened = svc.shell.open_token(request.match_info["link"], svc.clock.now())
    if opened is None or await svc.accounts.active(opened[0].account_id) is None:
        raise ApiError(404, "This address has expired or does not exist.")
    return await stream_file(request, svc.shell, *opened)
