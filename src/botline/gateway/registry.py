"""Creating and updating gateways: unique slugs per account, and the gateways declared in config."""

from __future__ import annotations

import logging

from botline.config import GatewayDefinition
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway, GatewayParameters, slugify
from botline.store.base import ConflictError, Store
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache

log = logging.getLogger(__name__)
MAX_SLUG_ATTEMPTS = 50


async def _free_slug(store: Store, account_id: str, name: str, *, keep_for: str | None = None) -> str:
    """`my-bot`, else `my-bot-2`, `my-bot-3`...; a gateway keeps its own slug (`keep_for`)."""
    base = slugify(name)
    for attempt in range(1, MAX_SLUG_ATTEMPTS + 1):
        slug = base if attempt == 1 else f"{base}-{attempt}"
        holder = await store.gateways.get_by_slug(account_id, slug)
        if holder is None or holder.id == keep_for:
            return slug
    raise ConflictError(f"too many gateways named {name!r}")


async def create_gateway(store: Store, account_id: str, name: str, parameters: GatewayParameters) -> Gateway:
    gateway = Gateway(
        account_id=account_id, name=name, slug=await _free_slug(store, account_id, name), parameters=parameters
    )
    await store.gateways.create(gateway)
    return gateway


async def save_gateway(store: Store, gateway: Gateway, clock: Clock) -> Gateway:
    """Stores an edited gateway, re-deriving its slug from the (possibly new) name."""
    gateway.slug = await _free_slug(store, gateway.account_id, gateway.name, keep_for=gateway.id)
    gateway.updated_at = clock.now()
    await store.gateways.update(gateway)
    return gateway


async def apply_declared(
    store: Store, account_id: str, definitions: list[GatewayDefinition], clock: Clock
) -> list[Gateway]:
    """Creates or updates (matched by slug) the gateways declared in the config file."""
    applied: list[Gateway] = []
    for definition in definitions:
        if not definition.complete:
            log.warning(
                "gateway %r in the config has no baseAddress or modelName (is OPENAI_MODEL set?); skipped",
                definition.name,
            )
            continue
        parameters = GatewayParameters.model_validate(definition.parameters)
        existing = await store.gateways.get_by_slug(account_id, slugify(definition.name))
        if existing is None:
            applied.append(await create_gateway(store, account_id, definition.name, parameters))
        else:
            existing.name, existing.parameters = definition.name, parameters
            applied.append(await save_gateway(store, existing, clock))
    return applied


class GatewayCache:
    """Gateways resolved by id or slug, kept in memory for `ttl` seconds (two store reads saved per turn).

    Edits and deletes call `forget`: this replica drops its copy at once and signals the others to
    drop theirs (if the signal is lost, theirs expire within `ttl`; docs/deploy.md).
    """

    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TtlCache[tuple[str, str], Gateway] = TtlCache(ttl=ttl)
        self._evictions = Eviction(store.signals, "gateway.forget", self._drop)

    async def start(self) -> None:
        await self._evictions.start()

    async def find(self, account_id: str, key: str) -> Gateway | None:
        """The account's gateway whose id, else slug, is `key`."""

        async def load() -> Gateway | None:
            return await self._store.gateways.get(account_id, key) or await self._store.gateways.get_by_slug(
                account_id, key
            )

        return await self._entries.get((account_id, key), load)

    async def forget(self, gateway_id: str) -> None:
        await self._evictions.evict(gateway_id)

    def _drop(self, gateway_id: str) -> None:
        self._entries.forget(lambda gateway: gateway.id == gateway_id)
