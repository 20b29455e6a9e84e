"""Policy alerts pushed to the account's `alertWebhookUrl` (parameters.governance): one signed POST per
violation of an alert- or block-level rule, off the turn, through the egress layer, retried with
backoff on 408/429/5xx and connection failures.

At most one delivery per violation: before its first attempt the sender claims the violation in the
Store (an atomic counter every replica shares), so a second sender of the same violation (another
task, another replica) skips it. The body names the violation's `id` (also in `X-Botline-Delivery`),
so a receiver drops a retry it did get once (an answer lost on the way back is retried)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson

from botline.account_cache import AccountCache
from botline.channels.provider_http import retry_after
from botline.config import GovernanceSettings
from botline.domain.clock import Clock
from botline.domain.policies import Violation
from botline.egress import Egress, EgressError
from botline.engine.handoff_notify import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from botline.metrics import Metrics
from botline.store.base import Store

log = logging.getLogger(__name__)
EVENT = "policy.alert"
DELIVERY_HEADER = "X-Botline-Delivery"
CLAIM_TTL_SECONDS = 7 * 86_400
MAX_RESPONSE_BYTES = 16 * 1024
MAX_WAIT_SECONDS = 300.0
RETRIED_STATUSES = frozenset({408, 429})


class AlertSender:
    def __init__(self, store: Store, egress: Egress, accounts: AccountCache, settings: GovernanceSettings,
                 metrics: Metrics, clock: Clock, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._store = store
        self._egress = egress
        self._accounts = accounts
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, violations: Sequence[Violation]) -> None:
        """Delivers each alert-level violation in its own task (the turn does not wait)."""
        for violation in violations:
            if violation.alert:
                task = asyncio.create_task(self.deliver(violation), name=f"policy-alert:{violation.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Waits for the deliveries under way (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def deliver(self, violation: Violation) -> None:
        try:
            await self._deliver(violation)
        except Exception:  # an alert must never break anything else: logged
            log.exception("policy alert %s could not be delivered", violation.id)
            self._metrics.policy_alert_deliveries("failed").inc()

    async def _deliver(self, violation: Violation) -> None:
        account = await self._accounts.get(violation.account_id)
        url = None if account is None else account.parameters.governance.alert_webhook_url
        if account is None or not url:
            return
        if await self._store.counters.increment(f"policy-alert:{violation.id}", ttl_seconds=CLAIM_TTL_SECONDS) > 1:
            self._metrics.policy_alert_deliveries("skipped").inc()
            return
        body = orjson.dumps({"event": EVENT, "id": violation.id, "accountId": account.id,
                             "violation": violation.view()})
        trust = await self._accounts.trust(account.id)
        wait = self._settings.alert_backoff_seconds
        for attempt in range(1, self._settings.alert_attempts + 1):
            timestamp = str(int(self._clock.now().timestamp()))
            headers = {"Content-Type": "application/json", EVENT_HEADER: EVENT, DELIVERY_HEADER: violation.id,
                       TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(account.salt, timestamp, body)}
            asked: float | None = None
            try:
                response = await self._egress.request(
                    "POST", url, trust=trust, data=body, headers=headers,
                    timeout=self._settings.alert_timeout_seconds, max_bytes=MAX_RESPONSE_BYTES)
            except EgressError as exc:
                problem = exc.message
            else:
                if response.ok:
                    self._metrics.policy_alert_deliveries("delivered").inc()
                    return
                problem = f"HTTP {response.status}"
                if response.status not in RETRIED_STATUSES and response.status < 500:
                    break
                asked = retry_after(response.headers)
            log.warning("policy alert %s to the webhook of account %s failed (attempt %d): %s",
                        violation.id, account.id, attempt, problem)
            if attempt < self._settings.alert_attempts:
                await self._sleep(min(MAX_WAIT_SECONDS, asked if asked is not None else wait))
                wait *= 2
        self._metrics.policy_alert_deliveries("failed").inc()
