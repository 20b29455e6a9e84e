"""Accounts, API keys, login and balance (seed sections Accounts, API Keys, Authentication, Information)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import Field, field_validator

from botline.accounts import IssuedKey, TooManyKeys, bounded_expiry, expiry, issue_key, masked, new_salt
from botline.api.http import ApiError, client_address, json_response, message_response, not_found, read_model
from botline.api.openapi import Access, MessageAnswer, documented
from botline.api.state import Services, principal, services
from botline.domain.accounts import Account, AccountParameters, ApiKey, KeyScope
from botline.domain.base import CamelModel
from botline.domain.limits import Name, Secret
from botline.store.changes import AccountChange

ACCESS_TOKEN_LIFETIME_DAYS = 180
LOGIN_WINDOW_SECONDS = 60

routes = web.RouteTableDef()


class CreateKeyRequest(CamelModel):
    label: Name = ""
    scope: KeyScope | None = None
    """Limits of the new key (gateways by id or slug, requests per minute); absent: those of the key
    creating it. Never wider than that key's."""
    duration: int = -1
    """Days until the key expires; -1 for a key that never expires."""

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: int) -> int:
        if value == 0 or value < -1 or value > 36500:
            raise ValueError("must be a number of days from 1 to 36500, or -1 for a key that never expires")
        return value


class UpdateAccountRequest(CamelModel):
    name: Name | None = Field(default=None, min_length=1)
    parameters: AccountParameters | None = None


class LoginRequest(CamelModel):
    login_key: Secret = Field(min_length=1)


def account_view(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "emailSha256": hashlib.sha256(account.email.strip().lower().encode()).hexdigest() if account.email else "",
        "plan": account.plan.value,
        "isAdmin": account.is_admin,
        "parameters": account.parameters.wire(exclude={"governance"}),
    }


@routes.get("/api/v1/accounts/api-key")
@documented("List the account's API keys (masked) and its webhook salt.")
async def list_keys(request: web.Request) -> web.Response:
    account = principal(request).account
    keys = await services(request).store.api_keys.list_for_account(account.id)
    return json_response({
        "apiKeys": [
            {"id": k.id, "expiresAt": k.wire()["expiresAt"], "usedAt": k.wire()["usedAt"], "label": k.label,
             "key": masked(k), "scope": None if k.scope is None else k.scope.wire()}
            for k in keys
        ],
        "salt": account.salt,
    })


async def mint_key(svc: Services, minting: ApiKey, *, label: str, expires_at: datetime | None,
                   scope: KeyScope | None = None) -> IssuedKey:
    """A new key of the minting key's account: never wider than the minting key (its scope, 403
    otherwise), never a longer life, and only while the account holds fewer keys than allowed."""
    try:
        bounded = (scope or KeyScope()).within(minting.scope) if scope or minting.scope else None
    except ValueError as exc:
        raise ApiError(403, f"Invalid value for {exc}.") from None
    try:
        return await issue_key(svc.store, minting.account_id, label=label,
                               expires_at=bounded_expiry(expires_at, minting),
                               limit=svc.settings.auth.max_keys_per_account, scope=bounded)
    except TooManyKeys as exc:
        raise ApiError(409, str(exc)) from exc


@routes.post("/api/v1/accounts/api-key")
@documented("Create an API key; the answer shows it once.", body=CreateKeyRequest)
async def create_key(request: web.Request) -> web.Response:
    """The key expires after `duration` days, or with the key that created it if that is sooner."""
    body = await read_model(request, CreateKeyRequest)
    svc = services(request)
    scope = body.scope
    if scope is not None and scope.gateways is not None:
        scope = scope.model_copy(update={"gateways": await _gateway_ids(svc, principal(request).account.id,
                                                                         scope.gateways)})
    issued = await mint_key(svc, principal(request).key, label=body.label,
                            expires_at=expiry(svc.clock.now(), body.duration), scope=scope)
    return json_response({"grantKey": issued.secret, "expiresAt": issued.record.wire()["expiresAt"]})


async def _gateway_ids(svc: Services, account_id: str, given: list[str]) -> list[str]:
    """The ids of the account's gateways named by id or slug; 400 naming the first unknown one."""
    ids = []
    for index, name in enumerate(given):
        gateway = await svc.gateways.find(account_id, name)
        if gateway is None:
            raise ApiError(400, f"Invalid value for scope.gateways.{index}: no AI gateway {name!r} in this account.")
        ids.append(gateway.id)
    return ids


@routes.delete("/api/v1/accounts/api-key/{key_id}")
@documented("Delete an API key of the account.", answer=MessageAnswer)
async def delete_key(request: web.Request) -> web.Response:
    svc = services(request)
    key_id = request.match_info["key_id"]
    if not await svc.store.api_keys.delete(principal(request).account.id, key_id):
        raise not_found("API key")
    await svc.authenticator.forget_key(key_id)
    return message_response("API key deleted.")


@routes.put("/api/v1/accounts")
@documented("Change the account's name or parameters.", body=UpdateAccountRequest, answer=MessageAnswer)
async def update_account(request: web.Request) -> web.Response:
    body = await read_model(request, UpdateAccountRequest)
    svc = services(request)
    account_id = principal(request).account.id
    parameters = body.parameters
    stored = await svc.store.accounts.get(account_id) if parameters is not None else None
    if parameters is not None and stored is not None:  # governance changes through /api/v1/policy/settings only
        parameters = parameters.model_copy(update={"governance": stored.parameters.governance})
    # Only these two fields, in place: an admin disabling the account meanwhile stays disabled.
    if await svc.store.accounts.change(account_id, AccountChange(name=body.name, parameters=parameters)) is None:
        raise not_found("Account")
    await svc.accounts.forget(account_id)
    return message_response("Account updated.")


@routes.post("/api/v1/accounts/roll-salt")
@documented("Replace the salt that webhook URLs are built on.")
async def roll_salt(request: web.Request) -> web.Response:
    svc = services(request)
    account_id = principal(request).account.id
    account = await svc.store.accounts.change(account_id, AccountChange(salt=new_salt()))
    if account is None:
        raise not_found("Account")
    await svc.accounts.forget(account_id)
    return json_response({"message": "Salt rolled: webhook URLs built on the old salt no longer work.",
                          "salt": account.salt})


@routes.post("/api/v1/auth/login")
@documented("Exchange a login key for an access token.", access=Access.PUBLIC, body=LoginRequest)
async def login(request: web.Request) -> web.Response:
    """Exchanges a login key (any valid API key of the account) for an access token valid 180 days,
    or until the login key expires if that is sooner."""
    svc = services(request)
    client = client_address(request, svc.settings.server.trusted_proxies)
    retry_after = await svc.limiter.hit(
        f"login:{client}", limit=svc.settings.auth.login_attempts_per_minute,
        window_seconds=LOGIN_WINDOW_SECONDS,
    )
    if retry_after is not None:
        raise ApiError(429, "Too many login attempts; try again in a minute.",
                       headers={"Retry-After": str(int(retry_after))})
    body = await read_model(request, LoginRequest)
    found = await svc.authenticator.authenticate(body.login_key)
    if found is None or found.account.disabled:
        raise ApiError(400, "Invalid login key, or the account is disabled.")
    token = await mint_key(svc, found.key, label="access token",
                           expires_at=svc.clock.now() + timedelta(days=ACCESS_TOKEN_LIFETIME_DAYS))
    return json_response({"accessToken": token.secret, "account": account_view(found.account)})


@routes.get("/api/v1/information/balance")
@documented("Balance, plan and recorded usage of the account.")
async def balance(request: web.Request) -> web.Response:
    """Real recorded usage; billing is off, so `balance` is null (unlimited) unless an admin set one."""
    svc = services(request)
    account = principal(request).account
    await svc.usage.flush()
    now = svc.clock.now()
    usage = svc.store.usage

    async def window(hours: int) -> dict[str, Any]:
        models = await usage.by_model(account.id, since=now - timedelta(hours=hours))
        total = sum(m.total_tokens for m in models) or 1
        return {
            "usedPercent": 0.0,
            "resetAt": (now + timedelta(hours=hours)).isoformat(),
            "isExhausted": False,
            "models": [
                {"modelName": m.model, "requestCount": m.requests, "consumedUnits": m.total_tokens,
                 "usageSharePercent": round(100.0 * m.total_tokens / total, 2)}
                for m in models
            ],
        }

    last_day = await usage.totals(account.id, since=now - timedelta(hours=24))
    return json_response({
        "balance": account.balance,
        "billingEnabled": False,
        "usage24h": 0.0,
        "tokens24h": {"requests": last_day.requests, "inputTokens": last_day.input_tokens,
                      "outputTokens": last_day.output_tokens},
        "plan": account.plan.value,
        "storageUsage": 0,
        "subscriptionModelUsage": {"plan": account.plan.value, "sixHours": await window(6),
                                   "weekly": await window(24 * 7)},
        "planLimits": {"includesSubscriptionModels": True, "includedStorage": 0},
    })
