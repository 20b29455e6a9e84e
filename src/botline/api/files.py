"""File uploads into a collection: PDF, DOCX, HTML, Markdown or text, split into documents `{file}:{n}`.

Beyond the seed (docs/knowledge.md, "Uploading files"). The file is read and chunked in a parsing
worker; the chunks are written like a JSONL import (same upsert rules, one transaction), and chunks
of an earlier upload of the same file that the new one no longer makes are deleted before the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from pydantic import BaseModel

from botline.api.documents import READ_CHUNK, collection_of
from botline.api.http import ApiError, json_response, not_found
from botline.api.openapi import documented
from botline.api.state import services
from botline.domain.knowledge import (
    REFERENCE_MAX,
    BrowseQuery,
    DocumentFilter,
    DocumentOrder,
    DocumentWrite,
    LabelChanges,
)
from botline.parsing import JobRejected, JobTimedOut, ParsingError, PoolBusy
from botline.parsing.files import SUPPORTED, FileKind, kind_of

routes = web.RouteTableDef()

FILE_FIELD, REFERENCE_FIELD = "file", "reference"
MAX_FILE_NAME = 200
"""Characters of the file name kept in document names (a name is at most 256)."""
BROWSE_PAGE = 1000


class FileAnswer(BaseModel):
    file: str
    reference: str
    documents: int
    enqueued: int
    skipped: int
    deleted: int


@dataclass(frozen=True)
class _Upload:
    name: str
    kind: FileKind
    data: bytes
    reference: str


def _file_name(raw: str | None) -> str:
    """The last path segment of the client's file name, control characters dropped, at most 200 characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:MAX_FILE_NAME]
    if not name:
        raise ApiError(400, "The file part needs a file name (Content-Disposition filename).")
    return name


async def _read_upload(request: web.Request, max_bytes: int) -> _Upload:
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "Send the file as multipart/form-data in a field named file.")
    upload: tuple[str, FileKind, bytes] | None = None
    reference: str | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == FILE_FIELD:
            if upload is not None:
                raise ApiError(400, "Send one file per upload (the multipart field file was given twice).")
            name = _file_name(part.filename)
            kind = kind_of(name, part.headers.get("Content-Type", ""))
            if kind is None:
                raise ApiError(415, f"Invalid value for file: {name!r} is not a supported format; upload {SUPPORTED}.")
            chunks, size = [], 0
            while chunk := await part.read_chunk(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, f"The file is larger than {max_bytes} bytes (knowledge.max_file_bytes).")
                chunks.append(chunk)
            upload = (name, kind, b"".join(chunks))
        elif part.name == REFERENCE_FIELD:
            raw = bytearray()
            while len(raw) <= REFERENCE_MAX * 4 and (chunk := await part.read_chunk(READ_CHUNK)):
                raw += chunk
            reference = raw.decode("utf-8", "replace").strip()
            if len(raw) > REFERENCE_MAX * 4 or len(reference) > REFERENCE_MAX:
                raise ApiError(400, f"Invalid value for reference: at most {REFERENCE_MAX} characters are accepted.")
    if upload is None:
        raise ApiError(400, "The multipart field file is missing.")
    name, kind, data = upload
    return _Upload(name=name, kind=kind, data=data, reference=reference or name[:REFERENCE_MAX])


def _refusal(exc: ParsingError) -> ApiError:
    if isinstance(exc, PoolBusy):
        return ApiError(503, exc.message)
    if isinstance(exc, JobRejected):
        return ApiError(400, f"Invalid value for file: {exc.message}")
    if isinstance(exc, JobTimedOut):
        return ApiError(422, "The file could not be read in time. Try a shorter or simpler file.")
    return ApiError(422, "The file could not be read. Try another file.")


@routes.post("/api/v1/collections/{id}/files")
@documented("Upload a PDF, DOCX, HTML, Markdown or text file (multipart field file, optional field reference); "
            "its text is split into documents named {file}:{n} sharing the reference.",
            answer=FileAnswer, body_required=False)
async def upload_file(request: web.Request) -> web.Response:
    """Uploading the same file name again replaces its documents: changed chunks are re-indexed,
    unchanged ones skipped, and chunks past the new file's end deleted."""
    collection = await collection_of(request)
    svc = services(request)
    upload = await _read_upload(request, svc.settings.knowledge.max_file_bytes)
    try:
        texts = await svc.files.split(upload.data, upload.kind)
    except ParsingError as exc:
        raise _refusal(exc) from exc
    writes = [DocumentWrite(name=f"{upload.name}:{n}", contents=text, reference=upload.reference, tags=None)
              for n, text in enumerate(texts, start=1)]
    outcome = await svc.store.documents.write(collection.account_id, collection.id, writes, now=svc.clock.now(),
                                              labels=LabelChanges.SAVE)
    if outcome is None:
        raise not_found("Collection")
    deleted = await _delete_leftovers(request, collection.account_id, collection.id, upload.name, len(texts))
    if outcome.enqueued:
        await svc.indexer.queued()
    return json_response({"file": upload.name, "reference": upload.reference, "documents": len(texts),
                          "enqueued": outcome.enqueued, "skipped": outcome.skipped, "deleted": deleted})


async def _delete_leftovers(request: web.Request, account_id: str, collection_id: str, file: str, count: int) -> int:
    """Deletes `{file}:{n}` for n past `count` (left by an earlier, longer upload of the same file)."""
    documents = services(request).store.documents
    prefix = f"{file}:"
    stale: list[str] = []
    offset = 0
    while True:
        page = await documents.browse(account_id, collection_id, BrowseQuery(
            filter=DocumentFilter(name=prefix), order=DocumentOrder.CREATED_ASC, offset=offset, limit=BROWSE_PAGE))
        for document in page:
            number = document.name[len(prefix):]
            if document.name.startswith(prefix) and number.isdigit() and int(number) > count:
                stale.append(document.id)
        if len(page) < BROWSE_PAGE:
            break
        offset += BROWSE_PAGE
    deleted = 0
    for document_id in stale:
        deleted += await documents.delete(account_id, collection_id, document_id)
    return deleted
