"""Batch job items (seed section Batch): JSONL import, listing, edits, deletion, retry and JSONL export."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from pydantic import Field

from botline.api.batch_workflows import event, item_view, job_view, owned_job, resume
from botline.api.http import ApiError, json_response, message_response, not_found, query_int, query_text, read_model
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import Services, services
from botline.domain.base import CamelModel
from botline.domain.batch import PRIORITY_MAX, BatchItem, BatchJob, ItemSelection, ItemState, JobState
from botline.store.batch import ItemEdit

routes = web.RouteTableDef()
ITEMS_PATH = "/api/v1/batch/workflows/{id}/jobs/{job_id}/items"
ITEM_PATH = ITEMS_PATH + "/{item_id}"
FILE_FIELDS = ("items", "documents")
INPUT_MAX_BYTES = 64 * 1024
"""One item's input (one JSONL line); a longer line is skipped."""
IMPORT_CHUNK = 1000
"""Items stored per Store write during an import."""
EXPORT_PAGE = 500
PAGE_MAX = 1000
READ_CHUNK = 64 * 1024


class ItemPatch(CamelModel):
    priority: int | None = Field(default=None, ge=-PRIORITY_MAX, le=PRIORITY_MAX)
    """Higher runs first (ties in import order)."""
    cancel: bool = False
    """True cancels a pending item no worker holds."""


class _Import:
    """Lines of an uploaded JSONL file, counted and stored in chunks as they arrive."""

    def __init__(self, svc: Services, job: BatchJob, room: int) -> None:
        self._svc, self._job, self._room = svc, job, room
        self.inserted = self.skipped = 0
        self._batch: list[str] = []

    async def line(self, raw: bytes) -> None:
        raw = raw.strip()
        if not raw:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not text or len(raw) > INPUT_MAX_BYTES or self.inserted + len(self._batch) >= self._room:
            self.skipped += 1
            return
        self._batch.append(text)
        if len(self._batch) >= IMPORT_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._batch:
            self.inserted += await self._svc.store.batch_items.add(
                self._job.account_id, self._job.id, self._batch, self._svc.clock.now())
            self._batch = []


async def _file_part(request: web.Request) -> BodyPartReader:
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "Send the JSONL file as multipart/form-data in the field 'items'.")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name in FILE_FIELDS:
            return part
        if isinstance(part, BodyPartReader):
            await part.release()
    raise ApiError(400, "Invalid value for items: a JSONL file in the field 'items' (or 'documents') is required.")


@routes.post(ITEMS_PATH)
@documented("Import items from a JSONL file (multipart field 'items', or 'documents'): each non-empty line is one "
            "item's input.", media_type="application/json")
async def import_items(request: web.Request) -> web.Response:
    """A line longer than 64 KiB, not UTF-8, or past `batch.max_items_per_job` is skipped (counted)."""
    job = await owned_job(request)
    svc = services(request)
    part = await _file_part(request)
    counts = await svc.store.batch_jobs.counts(job.id)
    upload = _Import(svc, job, max(0, svc.settings.batch.max_items_per_job - counts.total))
    limit, read, pending = svc.settings.server.max_body_bytes, 0, b""
    while chunk := await part.read_chunk(READ_CHUNK):
        read += len(chunk)
        if read > limit:
            raise ApiError(413, f"The file is larger than {limit} bytes (server.max_body_bytes); items read so far "
                                f"were imported ({upload.inserted}).")
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            await upload.line(line)
    await upload.line(pending)
    await upload.flush()
    if upload.inserted:
        await svc.store.batch_jobs.add_event(job.id, event(svc, "Imported", f"{upload.inserted} items imported, "
                                                                             f"{upload.skipped} skipped."))
        if job.state is JobState.FINISHED:
            await resume(svc, job, "Restarted", "New items were imported.")
        svc.batch.kick()
    return json_response({"inserted": upload.inserted, "skipped": upload.skipped})


@routes.get(ITEMS_PATH)
@documented("List a job's items in import order.", query={
    "state": "Only items in this state (Pending, Finished, Refused, ExecutionError, ValidationError, Cancelled).",
    "skip": "Items to skip (paging).", "take": f"Items to return (at most {PAGE_MAX}, default 100)."})
async def list_items(request: web.Request) -> web.Response:
    job = await owned_job(request)
    raw_state = query_text(request, "state")
    try:
        state = ItemState(raw_state) if raw_state else None
    except ValueError:
        raise ApiError(400, f"Query parameter state must be one of {', '.join(s.value for s in ItemState)}.") from None
    skip, take = query_int(request, "skip", 0), query_int(request, "take", 100)
    if skip < 0 or not 1 <= take <= PAGE_MAX:
        raise ApiError(400, f"Query parameters skip must be >= 0 and take between 1 and {PAGE_MAX}.")
    items = await services(request).store.batch_items.list_for_job(job.account_id, job.id, state=state, offset=skip,
                                                                   limit=take)
    return json_response([
        {key: value for key, value in item_view(item, running).items()
         if key in ("id", "insertedAt", "state", "isRunning", "priority", "input", "confidence", "totalCost")}
        for item, running in items
    ])


@routes.delete(ITEMS_PATH)
@documented("Delete pending, successful, failed or all items (never running ones).", answer=MessageAnswer,
            query={"which": "pending, successful, failed or all (default)."})
async def delete_items(request: web.Request) -> web.Response:
    job = await owned_job(request)
    raw = query_text(request, "which", ItemSelection.ALL.value).lower()
    try:
        which = ItemSelection(raw)
    except ValueError:
        raise ApiError(400, "Query parameter which must be pending, successful, failed or all.") from None
    deleted = await services(request).store.batch_items.delete_many(job.account_id, job.id, which)
    return json_response({"message": "Items removed.", "deleted": deleted})


@routes.post(ITEMS_PATH + "/retry")
@documented("Move failed items back to pending and start the job.", body_required=False)
async def retry_items(request: web.Request) -> web.Response:
    job = await owned_job(request)
    svc = services(request)
    moved = await svc.store.batch_items.retry_failed(job.account_id, job.id)
    if moved:
        await svc.store.batch_jobs.add_event(job.id, event(svc, "Retried", f"{moved} failed items back to pending."))
    if moved or job.state is JobState.PAUSED:
        await resume(svc, job, "Restarted", "Started again to retry failed items.")
    return json_response(await job_view(svc, await owned_job(request)))


@routes.get("/api/v1/batch/workflows/{id}/jobs/{job_id}/export.jsonl")
@documented("Export the job's items as JSONL: one line per item, in import order.", media_type="application/x-ndjson")
async def export(request: web.Request) -> web.StreamResponse:
    job = await owned_job(request)
    store = services(request).store
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson",
        "Content-Disposition": f'attachment; filename="batch-job-{job.id}.jsonl"'})
    await response.prepare(request)
    after = 0
    while page := await store.batch_items.page(job.id, after, EXPORT_PAGE):
        await response.write(b"".join(orjson.dumps(_export_line(item)) + b"\n" for item in page))
        after = page[-1].sequence
    await response.write_eof()
    return response


def _export_line(item: BatchItem) -> dict[str, Any]:
    wire = item.wire()
    return {key: wire[key] for key in ("id", "input", "output", "state", "validationResult", "confidence",
                                       "totalCost", "processedAt")}


async def _owned_item(request: web.Request, job: BatchJob) -> tuple[BatchItem, bool]:
    found = await services(request).store.batch_items.get(job.account_id, job.id, request.match_info["item_id"])
    if found is None:
        raise not_found("Batch item")
    return found


@routes.get(ITEM_PATH)
@documented("View a batch item.")
async def view_item(request: web.Request) -> web.Response:
    item, running = await _owned_item(request, await owned_job(request))
    view = item_view(item, running)
    view.pop("parentBatchWorkflowJobId", None)
    return json_response(view)


@routes.patch(ITEM_PATH)
@documented("Change a batch item's priority, or cancel it.", body=ItemPatch)
async def edit_item(request: web.Request) -> web.Response:
    job = await owned_job(request)
    patch = await read_model(request, ItemPatch)
    svc = services(request)
    item, _ = await _owned_item(request, job)
    if patch.priority is not None:
        await svc.store.batch_items.set_priority(job.account_id, job.id, item.id, patch.priority)
    if patch.cancel:
        outcome = await svc.store.batch_items.cancel(job.account_id, job.id, item.id, svc.clock.now())
        if outcome is ItemEdit.RUNNING:
            raise ApiError(409, "The item is running; it can be cancelled only while pending.")
        if outcome is ItemEdit.NOT_PENDING:
            raise ApiError(409, "Only a pending item can be cancelled.")
    updated, _ = await _owned_item(request, job)
    return json_response(item_view(updated))


@routes.delete(ITEM_PATH)
@documented("Delete a batch item (not while it runs).", answer=MessageAnswer)
async def delete_item(request: web.Request) -> web.Response:
    job = await owned_job(request)
    outcome = await services(request).store.batch_items.delete(job.account_id, job.id, request.match_info["item_id"])
    if outcome is ItemEdit.MISSING:
        raise not_found("Batch item")
    if outcome is ItemEdit.RUNNING:
        raise ApiError(409, "The item is running; delete it once its result is recorded.")
    return message_response("Item removed.")
