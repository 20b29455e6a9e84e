"""Administration of accounts (seed section Administration); only for keys of admin accounts."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import Field

from botline.api.http import ApiError, json_response, message_response, not_found, query_text, read_model
from botline.api.openapi import Access, MessageAnswer, documented
from botline.api.state import Services, principal, services
from botline.domain.accounts import Account, Plan, UsageLimits
from botline.domain.base import CamelModel
from botline.domain.limits import Email, Name, Text
from botline.store.changes import AccountChange, BalanceOperation

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


class AccountPatch(CamelModel):
    name: Name | None = Field(default=None, min_length=1)
    email: Email | None = None
    plan: Plan | None = None
    is_admin: bool | None = None
    disabled: bool | None = None
    limits: UsageLimits | None = None
    """Tokens per UTC day and spend per UTC month of the account's turns (docs/governance.md); `{}` removes them."""


class BalanceAdjustment(CamelModel):
    operation: BalanceOperation
    amount: float = Field(ge=0)
    description: Text = ""


def _require_admin(request: web.Request) -> None:
    if not principal(request).account.is_admin:
        raise ApiError(403, "This API key is not an administrator's.")


def admin_account_view(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "email": account.email, "plan": account.plan.value,
            "isAdmin": account.is_admin, "disabled": account.disabled, "balance": account.balance,
            "limits": None if account.limits is None or not account.limits.any else account.limits.wire(),
            "createdAt": account.wire()["createdAt"]}


async def _target(request: web.Request) -> Account:
    _require_admin(request)
    account = await services(request).store.accounts.get(request.match_info["account_id"])
    if account is None:
        raise not_found("Account")
    return account


@routes.get("/api/v1/admin/accounts")
@documented(
    "List accounts.", access=Access.ADMIN,
    query={"query": "Searches id, name and email.", "viewMode": "`disabled` lists only disabled accounts."},
)
async def list_accounts(request: web.Request) -> web.Response:
    """?query= searches id, name and email; ?viewMode=disabled lists only disabled accounts."""
    _require_admin(request)
    query = query_text(request, "query").strip().lower()
    view_mode = query_text(request, "viewMode", "default")
    accounts = await services(request).store.accounts.list()
    selected = [
        a for a in accounts
        if (not query or any(query in f.lower() for f in (a.id, a.name, a.email)))
        and (view_mode != "disabled" or a.disabled)
    ]
    return json_response([admin_account_view(a) for a in selected])


@routes.get("/api/v1/admin/accounts/{account_id}")
@documented("View an account.", access=Access.ADMIN)
async def get_account(request: web.Request) -> web.Response:
    account = await _target(request)
    return json_response({**admin_account_view(account), "parameters": account.parameters.wire(exclude={"governance"})})


@routes.patch("/api/v1/admin/accounts/{account_id}")
@documented("Change an account.", access=Access.ADMIN, body=AccountPatch, answer=MessageAnswer)
async def patch_account(request: web.Request) -> web.Response:
    """Only the fields given change (in place, so a tenant's own edit or a balance adjustment made
    at the same time is kept). Disabling takes effect at once on every replica; re-enabling
    resumes what waited meanwhile (docs/faults.md)."""
    account = await _target(request)
    patch = await read_model(request, AccountPatch)
    svc = services(request)
    given = patch.model_dump(exclude_none=True, exclude={"limits"})
    changed = await svc.store.accounts.change(account.id, AccountChange(**given, limits=patch.limits))
    if changed is None:
        raise not_found("Account")
    await svc.accounts.forget(account.id)
    if account.disabled and not changed.disabled:
        await resume_account(svc, account.id)
    return message_response("Account updated.")


async def resume_account(svc: Services, account_id: str) -> None:
    """After re-enabling: the account's channel messages left pending are answered, and its overdue
    scheduled activations fire (within the misfire grace; docs/scheduling.md). Here at once; other
    replicas arm their timers at their next schedule sync."""
    resumed = await svc.inbound.resume(account_id=account_id)
    await svc.scheduler.sync()
    if resumed:
        log.info("account %s re-enabled: %d chats with pending messages resumed", account_id, resumed)


@routes.get("/api/v1/admin/accounts/{account_id}/usage")
@documented("Recorded usage of an account, per model.", access=Access.ADMIN)
async def account_usage(request: web.Request) -> web.Response:
    account = await _target(request)
    svc = services(request)
    await svc.usage.flush()
    models = await svc.store.usage.by_model(account.id)
    totals = await svc.store.usage.totals(account.id)
    return json_response({
        "accountId": account.id,
        "models": [m.wire() | {"totalTokens": m.total_tokens} for m in models],
        "totals": totals.wire() | {"totalTokens": totals.total_tokens},
    })


@routes.post("/api/v1/admin/accounts/{account_id}/balance-adjustments")
@documented("Adjust an account's balance.", access=Access.ADMIN, body=BalanceAdjustment)
async def adjust_balance(request: web.Request) -> web.Response:
    """Balances are informational while billing is off: inference is never blocked by them. The
    adjustment is applied atomically in the Store, so concurrent adjustments all count."""
    account = await _target(request)
    adjustment = await read_model(request, BalanceAdjustment)
    svc = services(request)
    balance = await svc.store.accounts.adjust_balance(account.id, adjustment.operation, adjustment.amount)
    if balance is None:
        raise not_found("Account")
    await svc.accounts.forget(account.id)
    return json_response({"message": "Balance adjusted.", "balance": balance})
