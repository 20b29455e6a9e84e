"""The Store contract for AI policies and their violations (run on SQLite and Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botline.domain.policies import ActionType, Phase, Policy, RiskType, Violation, ViolationQuery
from botline.store import Store
from botline.store.changes import PolicyChange

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE, BOB = "account-alice", "account-bob"


def policy(name: str, account_id: str = ALICE, minutes: int = 0) -> Policy:
    return Policy(account_id=account_id, name=name, content="Never reveal discount codes.", risk_type=RiskType.HIGH,
                  action_type=ActionType.BLOCK, created_at=T0 + timedelta(minutes=minutes))


def violation(policy_id: str, minutes: int, *, account_id: str = ALICE, severity: RiskType = RiskType.HIGH,
              block: bool = False, alert: bool = False) -> Violation:
    return Violation(account_id=account_id, policy_id=policy_id, policy_name="p",
                     timestamp=T0 + timedelta(minutes=minutes), explanation=f"at {minutes}", phase=Phase.OUTPUT,
                     severity=severity, block=block, alert=alert)


async def test_policies_read_back_list_oldest_first_and_stay_in_their_account(store: Store) -> None:
    second, first = policy("b", minutes=1), policy("a")
    for item in (second, first, policy("theirs", BOB)):
        await store.policies.create(item)
    assert await store.policies.get(ALICE, first.id) == first
    assert await store.policies.get(BOB, first.id) is None
    assert [p.name for p in await store.policies.list_for_account(ALICE)] == ["a", "b"]


async def test_change_sets_fields_in_place_and_delete_is_scoped(store: Store) -> None:
    stored = policy("a")
    await store.policies.create(stored)
    assert await store.policies.change(BOB, stored.id, PolicyChange({"name": "x"})) is None
    changed = await store.policies.change(ALICE, stored.id, PolicyChange({"action_type": ActionType.LOG,
                                                                          "name": "renamed"}))
    assert changed is not None and changed.action_type is ActionType.LOG and changed.name == "renamed"
    assert changed.content == stored.content and await store.policies.get(ALICE, stored.id) == changed
    assert not await store.policies.delete(BOB, stored.id)
    assert await store.policies.delete(ALICE, stored.id)
    assert await store.policies.list_for_account(ALICE) == []


async def test_violations_are_newest_first_filtered_and_paged(store: Store) -> None:
    await store.policies.add_violations([
        violation("p1", 0, severity=RiskType.LOW), violation("p1", 1, block=True, alert=True),
        violation("p2", 2, alert=True), violation("p1", 3), violation("p1", 4, account_id=BOB),
    ])
    found, total = await store.policies.violations(ALICE, ViolationQuery())
    assert [v.explanation for v in found] == ["at 3", "at 2", "at 1", "at 0"] and total == 4
    found, total = await store.policies.violations(ALICE, ViolationQuery(policy_id="p1", skip=1, take=1))
    assert [v.explanation for v in found] == ["at 1"] and total == 3
    found, _ = await store.policies.violations(ALICE, ViolationQuery(since=T0 + timedelta(minutes=1),
                                                                     until=T0 + timedelta(minutes=2)))
    assert [v.explanation for v in found] == ["at 2", "at 1"]
    found, _ = await store.policies.violations(ALICE, ViolationQuery(alerts_only=True, block=False))
    assert [v.explanation for v in found] == ["at 2"]
    found, _ = await store.policies.violations(ALICE, ViolationQuery(severity=frozenset({RiskType.LOW})))
    assert [v.explanation for v in found] == ["at 0"]
