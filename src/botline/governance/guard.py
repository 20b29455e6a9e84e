"""AI policies on the turn pipeline: the input checked beside the model call (or before it, in
sequential mode), the answer after it, each by one judge call over every rule in scope. Violations are
recorded; alert- and block-level ones counted as alerts and pushed to the account's alert webhook; a
block answers with the configured refusal. An account without policies in scope costs nothing: the
policies come from a per-account cache (an empty list is cached too)."""

from __future__ import annotations

import logging
import time

from botline.account_cache import AccountCache
from botline.config import GovernanceSettings
from botline.domain.accounts import GovernanceParameters, InputCheck
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway
from botline.domain.llm_connections import ConnectionStats
from botline.domain.policies import ActionType, Phase, Policy, Violation
from botline.domain.usage import UsageRecord
from botline.gateway.accounting import UsageRecorder
from botline.gateway.caller import Caller
from botline.gateway.connection_meter import ConnectionMeter
from botline.gateway.connections import ConnectionCache, Upstream
from botline.gateway.context import ChatMessage
from botline.gateway.tokens import message_text
from botline.governance.alerts import AlertSender
from botline.governance.judge import Judge, Verdict
from botline.governance.policy_cache import PolicyCache
from botline.metrics import Metrics
from botline.store.base import Store

log = logging.getLogger(__name__)


class PolicyGuard:
    """The pipeline's TurnGuard (gateway/guards.py)."""

    def __init__(self, store: Store, policies: PolicyCache, judge: Judge, *, accounts: AccountCache,
                 connections: ConnectionCache, alerts: AlertSender, meter: ConnectionMeter, usage: UsageRecorder,
                 metrics: Metrics, clock: Clock, settings: GovernanceSettings) -> None:
        self.store = store
        self.policies = policies
        self.judge = judge
        self.accounts = accounts
        self.connections = connections
        self.alerts = alerts
        self.meter = meter
        self.usage = usage
        self.metrics = metrics
        self.clock = clock
        self.settings = settings

    async def open(self, gateway: Gateway, caller: Caller, upstream: Upstream) -> PolicyTurn | None:
        in_scope = [p for p in await self.policies.of_account(gateway.account_id)
                    if p.applies_to(gateway.id, caller.chat_client_id)]
        if not in_scope:
            return None
        account = await self.accounts.get(gateway.account_id)
        governance = GovernanceParameters() if account is None else account.parameters.governance
        return PolicyTurn(self, gateway, caller, upstream, in_scope, governance)

    async def judge_upstream(self, gateway: Gateway, upstream: Upstream,
                             governance: GovernanceParameters) -> Upstream | None:
        """The account's judge connection when it names one (None when it was deleted), else the gateway's."""
        if governance.judge_connection_id is None:
            return upstream
        connection = await self.connections.find(gateway.account_id, governance.judge_connection_id)
        if connection is None:
            return None
        return Upstream(connection.endpoint, connection.credential, upstream.trust, connection)


class PolicyTurn:
    """The checks of one turn (a GuardedTurn)."""

    def __init__(self, guard: PolicyGuard, gateway: Gateway, caller: Caller, upstream: Upstream,
                 policies: list[Policy], governance: GovernanceParameters) -> None:
        self._guard = guard
        self._gateway = gateway
        self._caller = caller
        self._upstream = upstream
        self._policies = policies
        self._governance = governance

    @property
    def holds_output(self) -> bool:
        return any(p.action_type is ActionType.BLOCK for p in self._policies)

    @property
    def parallel_input(self) -> bool:
        mode = self._governance.input_check or InputCheck(self._guard.settings.input_check)
        return mode is InputCheck.PARALLEL

    async def check_input(self, messages: list[ChatMessage]) -> str | None:
        latest = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        text = "" if latest is None else message_text(latest)
        return await self._check(Phase.INPUT, text[-self._guard.settings.max_checked_chars:])

    async def check_output(self, text: str) -> str | None:
        return await self._check(Phase.OUTPUT, text[:self._guard.settings.max_checked_chars])

    async def _check(self, phase: Phase, text: str) -> str | None:
        if not text.strip():
            return None
        guard = self._guard
        model = guard.judge.model_for(self._gateway.parameters.model_name, self._governance.judge_model)
        upstream = await guard.judge_upstream(self._gateway, self._upstream, self._governance)
        if upstream is None:
            log.warning("the account's policy judge connection no longer exists: the %s check did not run",
                        phase.value)
            verdict = Verdict(ran=False)
        else:
            started = time.perf_counter()
            verdict = await guard.judge.verdict(upstream, model, self._policies, phase, text)
            self._account_tokens(upstream, model, verdict, time.perf_counter() - started)
        blocked = any(p.action_type is ActionType.BLOCK for p, _ in verdict.broken)
        await self._record(phase, verdict, blocked)
        if blocked:
            return guard.settings.refusal_text
        return None

    def _account_tokens(self, upstream: Upstream, model: str, verdict: Verdict, seconds: float) -> None:
        """The judge's tokens, apart from the gateway's own: policy tokens of the gateway's usage records,
        of the judge's connection, and of `botline_model_tokens` under the judge's model."""
        guard, usage = self._guard, verdict.usage
        guard.metrics.model_call(model, seconds, first_token_seconds=None, prompt_tokens=usage.prompt_tokens,
                                 completion_tokens=usage.completion_tokens)
        guard.usage.add(UsageRecord(
            account_id=self._gateway.account_id, gateway_id=self._gateway.id, model=model,
            session_id=self._caller.session_id, input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens, governance=True, at=guard.clock.now()))
        if upstream.connection is not None:
            guard.meter.add(self._gateway.account_id, upstream.connection.id, ConnectionStats(
                api_calls=1, tokens_in=usage.prompt_tokens, tokens_out=usage.completion_tokens,
                policy_tokens_in=usage.prompt_tokens, policy_tokens_out=usage.completion_tokens))

    async def _record(self, phase: Phase, verdict: Verdict, blocked: bool) -> None:
        guard, now = self._guard, self._guard.clock.now()
        connection = self._upstream.connection
        violations = [
            Violation(account_id=self._gateway.account_id, policy_id=p.id, policy_name=p.name, timestamp=now,
                      explanation=explanation, phase=phase, severity=p.risk_type,
                      block=p.action_type is ActionType.BLOCK, alert=p.action_type >= ActionType.ALERT,
                      conversation_id=self._caller.session_id, user_id=self._caller.external_user_id,
                      llm_type=None if connection is None else connection.ai_type.value,
                      llm_model=self._gateway.parameters.model_name, host=self._gateway.id)
            for p, explanation in verdict.broken
        ]
        alerts = sum(1 for v in violations if v.alert)
        outcome = "failed" if not verdict.ran else "blocked" if blocked else "violated" if violations else "passed"
        guard.metrics.policy_checks(phase.value, outcome).inc()
        guard.metrics.policy_alerts.inc(alerts)
        if violations:
            log.info("policy violations in the %s of a turn on gateway %s: %s", phase.value, self._gateway.id,
                     ", ".join(v.policy_id for v in violations))
            await guard.store.policies.add_violations(violations)
            guard.alerts.send(violations)
        if connection is not None and (violations or blocked):
            guard.meter.add(self._gateway.account_id, connection.id, ConnectionStats(
                policy_violations=len(violations), alerts=alerts, blocks=int(blocked)))
