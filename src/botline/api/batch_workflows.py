"""Batch workflows and jobs (seed section Batch). Items, their import and export: api/batch_items.py."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from aiohttp import web
from pydantic import BeforeValidator, Field

from botline.api.http import ApiError, json_response, message_response, not_found, parse_model, read_json, read_model
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import Services, principal, services
from botline.batch import tools
from botline.domain.base import CamelModel
from botline.domain.batch import BatchJob, JobEvent, JobState, Workflow, WorkflowOptions, WorkflowSettings
from botline.domain.limits import Name, Patch, PatchOf, partial

routes = web.RouteTableDef()
LATEST_ITEMS = 10
"""Items in a job view's `latestItems` (the most recently processed)."""
SETTINGS_PATCH = partial(WorkflowSettings)
OPTIONS_PATCH = partial(WorkflowOptions)


class WorkflowPatch(CamelModel):
    """Given top-level fields replace the stored ones; `options` is merged key by key."""

    title: Name | None = None
    options: Annotated[Patch, PatchOf((WorkflowOptions,))] | None = None
    model_name: Name | None = Field(default=None, min_length=1)
    reasoning_effort: Name | None = None
    error_stop_threshold: int | None = None
    max_retries: int | None = None


PATCH_KEYS = frozenset(info.alias or name for name, info in WorkflowPatch.model_fields.items())


class JobAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


_ACTION_WORDS = {"pause": "pause", "paused": "pause", "resume": "resume", "active": "resume", "cancel": "cancel",
                 "cancelled": "cancel", "canceled": "cancel", "finished": "cancel"}


def _action(value: Any) -> Any:
    return _ACTION_WORDS.get(value.lower(), value) if isinstance(value, str) and len(value) <= 16 else value


class JobBody(CamelModel):
    title: Name | None = None


class JobPatch(CamelModel):
    """`state`: pause (or Paused), resume (or Active), cancel (or Cancelled)."""

    title: Name | None = None
    state: Annotated[JobAction, BeforeValidator(_action)] | None = None


def _job_id(request: web.Request) -> str:
    return request.match_info["job_id"]


async def owned_workflow(request: web.Request) -> Workflow:
    store = services(request).store
    workflow = await store.batch_workflows.get(principal(request).account.id, request.match_info["id"])
    if workflow is None:
        raise not_found("Batch workflow")
    return workflow


async def owned_job(request: web.Request) -> BatchJob:
    """The job in the path, which must belong to the workflow in the path and to the caller's account."""
    job = await services(request).store.batch_jobs.get(principal(request).account.id, _job_id(request))
    if job is None or job.workflow_id != request.match_info["id"]:
        raise not_found("Batch job")
    return job


def _check_tools(settings: WorkflowSettings) -> None:
    enabled = settings.options.enabled_tools
    why = None if enabled is None else tools.refusal(enabled.enabled_functions)
    if why is not None:
        raise ApiError(400, why)


async def _check_model(svc: Services, account_id: str, model_name: str) -> None:
    if await svc.gateways.find(account_id, model_name) is None:
        raise ApiError(400, f"Invalid value for modelName: no AI gateway {model_name!r} (an id or slug) in this "
                            "account.")


def event(svc: Services, kind: str, description: str) -> JobEvent:
    return JobEvent(moment=svc.clock.now(), event_type=kind, description=description)


async def job_summary(svc: Services, job: BatchJob, workflow_title: str | None) -> dict[str, Any]:
    counts = await svc.store.batch_jobs.counts(job.id)
    events = await svc.store.batch_jobs.events(job.id)
    wire = job.wire(exclude={"account_id"})
    return {"id": job.id, "parentBatchWorkflowId": job.workflow_id, "workflowTitle": workflow_title,
            "title": job.title, "createdAt": wire["createdAt"], "state": job.state.value,
            "restartedAt": wire["restartedAt"], **counts.summary(), "eventCount": len(events)}


def item_view(item: Any, running: bool | None = None) -> dict[str, Any]:
    data = item.wire(exclude={"account_id", "sequence"})
    if running is not None:
        data["isRunning"] = running
    return dict(data)


async def job_view(svc: Services, job: BatchJob) -> dict[str, Any]:
    """The seed's job detail: the job with its log, the summary, progression and the latest items."""
    workflow = await svc.store.batch_workflows.get(job.account_id, job.workflow_id)
    summary = await job_summary(svc, job, workflow.title if workflow else None)
    events = await svc.store.batch_jobs.events(job.id)
    latest = await svc.store.batch_items.latest(job.id, LATEST_ITEMS)
    return {
        "job": {**job.wire(exclude={"account_id"}), "updates": [e.wire() for e in events]},
        "summary": summary,
        "progression": [{"moment": svc.clock.now().isoformat(), "finished": summary["finished"],
                         "failed": summary["failed"], "averageConfidence": summary["averageConfidence"],
                         "refusalRate": summary["refusalRate"]}],
        "latestItems": [item_view(item) for item in latest],
    }


@routes.get("/api/v1/batch/workflows")
@documented("List batch workflows.")
async def list_workflows(request: web.Request) -> web.Response:
    listed = await services(request).store.batch_workflows.list_for_account(principal(request).account.id)
    return json_response([
        {"id": w.id, "createdAt": w.wire()["createdAt"], "updatedAt": w.wire()["updatedAt"], "title": w.title,
         "modelName": w.model_name, "validationEnabled": bool(w.options.validation_instruction), "jobCount": jobs}
        for w, jobs in listed
    ])


@routes.post("/api/v1/batch/workflows")
@documented("Create a batch workflow.", body=WorkflowSettings)
async def create_workflow(request: web.Request) -> web.Response:
    body = await read_model(request, WorkflowSettings)
    _check_tools(body)
    svc, account_id = services(request), principal(request).account.id
    await _check_model(svc, account_id, body.model_name)
    now = svc.clock.now()
    workflow = Workflow(**body.model_dump(), account_id=account_id, created_at=now, updated_at=now)
    await svc.store.batch_workflows.create(workflow)
    return json_response({"id": workflow.id})


@routes.get("/api/v1/batch/workflows/{id}")
@documented("View a batch workflow.")
async def view_workflow(request: web.Request) -> web.Response:
    return json_response((await owned_workflow(request)).view())


@routes.patch("/api/v1/batch/workflows/{id}")
@documented("Edit a batch workflow (the given fields; options merged key by key).", body=WorkflowPatch)
async def edit_workflow(request: web.Request) -> web.Response:
    workflow = await owned_workflow(request)
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    patch = parse_model(WorkflowPatch, raw)
    given = {key: value for key, value in raw.items() if key in PATCH_KEYS}
    parse_model(SETTINGS_PATCH, {k: v for k, v in given.items() if k != "options"})
    stored = workflow.settings()
    if patch.options is not None:
        parse_model(OPTIONS_PATCH, patch.options, at="options")
        given["options"] = {**stored["options"], **patch.options}
    settings = parse_model(WorkflowSettings, {**stored, **given})
    _check_tools(settings)
    svc = services(request)
    if settings.model_name != workflow.model_name:
        await _check_model(svc, workflow.account_id, settings.model_name)
    changed = await svc.store.batch_workflows.change(workflow.account_id, workflow.id, settings, svc.clock.now())
    if changed is None:
        raise not_found("Batch workflow")
    return json_response(changed.view())


@routes.delete("/api/v1/batch/workflows/{id}")
@documented("Delete a batch workflow with its jobs and items.", answer=MessageAnswer)
async def delete_workflow(request: web.Request) -> web.Response:
    store = services(request).store
    if not await store.batch_workflows.delete(principal(request).account.id, request.match_info["id"]):
        raise not_found("Batch workflow")
    return message_response("Batch workflow deleted.")


@routes.get("/api/v1/batch/jobs")
@documented("List every batch job of the account.")
async def list_account_jobs(request: web.Request) -> web.Response:
    svc, account_id = services(request), principal(request).account.id
    titles = {w.id: w.title for w, _ in await svc.store.batch_workflows.list_for_account(account_id)}
    jobs = await svc.store.batch_jobs.list_for_account(account_id)
    return json_response([await job_summary(svc, job, titles.get(job.workflow_id)) for job in jobs])


@routes.get("/api/v1/batch/workflows/{id}/jobs")
@documented("List a batch workflow's jobs.")
async def list_jobs(request: web.Request) -> web.Response:
    workflow = await owned_workflow(request)
    svc = services(request)
    jobs = await svc.store.batch_jobs.list_for_account(workflow.account_id, workflow.id)
    return json_response([await job_summary(svc, job, workflow.title) for job in jobs])


@routes.post("/api/v1/batch/workflows/{id}/jobs")
@documented("Create a job under a batch workflow (Active: it runs as soon as items are imported).", body=JobBody,
            body_required=False)
async def create_job(request: web.Request) -> web.Response:
    workflow = await owned_workflow(request)
    body = await read_model(request, JobBody) if await request.read() else JobBody()
    svc = services(request)
    job = BatchJob(account_id=workflow.account_id, parentBatchWorkflowId=workflow.id, title=body.title,
                   created_at=svc.clock.now())
    await svc.store.batch_jobs.create(job, event(svc, "Created", "The job was created."))
    return json_response({"id": job.id})


@routes.get("/api/v1/batch/workflows/{id}/jobs/{job_id}")
@documented("View a batch job: its log, counters and latest items.")
async def view_job(request: web.Request) -> web.Response:
    return json_response(await job_view(services(request), await owned_job(request)))


async def resume(svc: Services, job: BatchJob, kind: str, description: str) -> BatchJob:
    """Makes the job Active (restartedAt now) and wakes the runner; a job with nothing left finishes again."""
    moved = await svc.store.batch_jobs.transition(
        job.account_id, job.id, JobState.ACTIVE, allowed_from=frozenset({JobState.PAUSED, JobState.FINISHED}),
        event=event(svc, kind, description), restarted_at=svc.clock.now())
    await svc.store.batch_jobs.finish_if_drained(job.id, event(svc, "Finished", "Every item was processed."))
    svc.batch.kick()
    return moved or job


@routes.patch("/api/v1/batch/workflows/{id}/jobs/{job_id}")
@documented("Pause, resume or cancel a batch job, or change its title.", body=JobPatch)
async def edit_job(request: web.Request) -> web.Response:
    """Pause: no more items are claimed (running ones finish). Cancel: the same, and every pending item
    becomes Cancelled; the job is then Finished."""
    job = await owned_job(request)
    patch = await read_model(request, JobPatch)
    svc = services(request)
    if "title" in patch.model_fields_set:
        await svc.store.batch_jobs.set_title(job.account_id, job.id, patch.title)
    if patch.state is JobAction.PAUSE and job.state is not JobState.PAUSED:
        if await svc.store.batch_jobs.transition(job.account_id, job.id, JobState.PAUSED,
                                                 allowed_from=frozenset({JobState.ACTIVE}),
                                                 event=event(svc, "Paused", "Paused by the API.")) is None:
            raise ApiError(409, "Only an Active job can be paused.")
    elif patch.state is JobAction.RESUME and job.state is JobState.PAUSED:
        await resume(svc, job, "Resumed", "Resumed by the API.")
    elif patch.state is JobAction.CANCEL:
        await svc.store.batch_jobs.transition(
            job.account_id, job.id, JobState.FINISHED, allowed_from=frozenset({JobState.ACTIVE, JobState.PAUSED}),
            event=event(svc, "Cancelled", "Cancelled by the API: pending items were cancelled."))
        await svc.store.batch_items.cancel_pending(job.id, svc.clock.now())
    return json_response(await job_view(svc, await owned_job(request)))


@routes.delete("/api/v1/batch/workflows/{id}/jobs/{job_id}")
@documented("Delete a batch job and its items.", answer=MessageAnswer)
async def delete_job(request: web.Request) -> web.Response:
    job = await owned_job(request)
    await services(request).store.batch_jobs.delete(job.account_id, job.id)
    return message_response("Batch job deleted.")
