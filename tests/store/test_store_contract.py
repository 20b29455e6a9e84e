"""The Store contract: every backend (see conftest `store`) must pass every test here."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from botline.domain.accounts import Account, AccountParameters, ApiKey, Plan
from botline.domain.chat_clients import ChatClient, ClientParameters, LimitingParameters
from botline.domain.conversations import Message, MessageStatus, Role, Session
from botline.domain.gateways import Gateway, GatewayParameters
from botline.domain.handoff import Controller, Handoff, HandoffTrigger
from botline.domain.inbound import ChatKey, InboundRecord
from botline.domain.integrations import Integrations, IntegrationType, TelegramIntegration, ZapiIntegration
from botline.domain.memory import Memory, MemoryFormat
from botline.domain.schedules import ScheduledItem, ScheduleKind, ScheduleStatus, ScheduleTarget
from botline.domain.usage import ModelUsage, UsageRecord, UsageTotals
from botline.store import ConflictError, Store
from botline.store.base import HeldLease, PromptWrite, SessionChange
from botline.store.changes import AccountChange, BalanceOperation, ClientSettings, SessionContext

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ALICE = "account-alice"
BOB = "account-bob"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def account(name: str, created_at: datetime = T0) -> Account:
    return Account(name=name, salt=f"salt-{name}", created_at=created_at)


def api_key(account_id: str, key_hash: str, created_at: datetime = T0) -> ApiKey:
    return ApiKey(account_id=account_id, key_hash=key_hash, key_tail=key_hash[-4:], created_at=created_at)


def gateway(account_id: str, slug: str, created_at: datetime = T0) -> Gateway:
    parameters = GatewayParameters(base_address="https://llm.example.com/v1", model_name="model-a")
    return Gateway(account_id=account_id, name=slug.title(), slug=slug, parameters=parameters, created_at=created_at)


def chat_client(account_id: str, name: str, created_at: datetime = T0) -> ChatClient:
    parameters = ClientParameters(primary_color="#6366f1", page_title=name.title())
    return ChatClient(account_id=account_id, name=name, client_parameters=parameters, created_at=created_at)


def session(
    account_id: str = ALICE,
    client_id: str = "client-1",
    access_key: str = "ak-1",
    created_at: datetime = T0,
    *,
    tag: str | None = None,
    expires_at: datetime | None = None,
) -> Session:
    return Session(
        account_id=account_id,
        chat_client_id=client_id,
        access_key=access_key,
        tag=tag,
        created_at=created_at,
        expires_at=created_at + timedelta(days=1) if expires_at is None else expires_at,
    )


def message(session_id: str, content: str, created_at: datetime = T0) -> Message:
    return Message(session_id=session_id, role=Role.USER, content=content, created_at=created_at)


def inbound(
    provider_message_id: str,
    chat_id: str = "chat-1",
    *,
    client_id: str = "client-1",
    integration: IntegrationType = IntegrationType.TELEGRAM,
    account_id: str = ALICE,
) -> InboundRecord:
    return InboundRecord(
        account_id=account_id,
        chat_client_id=client_id,
        integration=integration,
        chat_id=chat_id,
        provider_message_id=provider_message_id,
        text=f"text of {provider_message_id}",
    )


def usage(
    gateway_id: str,
    model: str,
    when: datetime,
    account_id: str = ALICE,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    error: bool = False,
) -> UsageRecord:
    return UsageRecord(
        account_id=account_id,
        gateway_id=gateway_id,
        model=model,
        at=when,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        error=error,
    )


class TestLifecycle:
    async def test_ping_answers_on_a_live_store(self, store: Store) -> None:
        await store.ping()

    async def test_close_twice_is_harmless(self, store: Store) -> None:
        await store.close()
        await store.close()


class TestAccounts:
    async def test_created_account_reads_back_equal(self, store: Store) -> None:
        alice = account("alice")
        alice.parameters.notifications.emails.append("ops@example.com")
        await store.accounts.create(alice)
        assert await store.accounts.get(alice.id) == alice

    async def test_unknown_account_is_none(self, store: Store) -> None:
        assert await store.accounts.get("nobody") is None

    async def test_creating_the_same_id_twice_conflicts(self, store: Store) -> None:
        alice = account("alice")
        await store.accounts.create(alice)
        with pytest.raises(ConflictError):
            await store.accounts.create(alice.model_copy(update={"name": "impostor"}))
        assert [a.name for a in await store.accounts.list()] == ["alice"]

    async def test_update_replaces_the_document(self, store: Store) -> None:
        alice = account("alice")
        await store.accounts.create(alice)
        await store.accounts.update(alice.model_copy(update={"name": "Alice B.", "balance": 12.5}))
        stored = await store.accounts.get(alice.id)
        assert stored is not None and (stored.name, stored.balance) == ("Alice B.", 12.5)

    async def test_update_of_an_unknown_id_is_ignored(self, store: Store) -> None:
        ghost = account("ghost")
        await store.accounts.update(ghost)
        assert await store.accounts.get(ghost.id) is None
        assert await store.accounts.list() == []

    async def test_list_is_oldest_first(self, store: Store) -> None:
        for name, minute in [("second", 2), ("first", 0), ("third", 5)]:
            await store.accounts.create(account(name, at(minute)))
        assert [a.name for a in await store.accounts.list()] == ["first", "second", "third"]


class TestApiKeys:
    async def test_key_is_found_by_its_hash(self, store: Store) -> None:
        key = api_key(ALICE, "hash-1")
        await store.api_keys.create(key)
        assert await store.api_keys.get_by_hash("hash-1") == key
        assert await store.api_keys.get_by_hash("hash-2") is None

    async def test_a_hash_is_unique_across_accounts(self, store: Store) -> None:
        await store.api_keys.create(api_key(ALICE, "hash-1"))
        with pytest.raises(ConflictError):
            await store.api_keys.create(api_key(BOB, "hash-1"))
        assert await store.api_keys.count() == 1
        assert await store.api_keys.list_for_account(BOB) == []

    async def test_list_holds_only_the_accounts_keys_oldest_first(self, store: Store) -> None:
        newer, older = api_key(ALICE, "h-new", at(10)), api_key(ALICE, "h-old", at(1))
        for key in (newer, api_key(BOB, "h-bob"), older):
            await store.api_keys.create(key)
        assert [k.key_hash for k in await store.api_keys.list_for_account(ALICE)] == ["h-old", "h-new"]

    async def test_delete_is_scoped_by_account(self, store: Store) -> None:
        key = api_key(ALICE, "hash-1")
        await store.api_keys.create(key)
        assert await store.api_keys.delete(BOB, key.id) is False
        assert await store.api_keys.get_by_hash("hash-1") == key
        assert await store.api_keys.delete(ALICE, key.id) is True
        assert await store.api_keys.get_by_hash("hash-1") is None
        assert await store.api_keys.list_for_account(ALICE) == []
        assert await store.api_keys.delete(ALICE, key.id) is False

    async def test_a_deleted_keys_hash_can_be_used_again(self, store: Store) -> None:
        first = api_key(ALICE, "hash-1")
        await store.api_keys.create(first)
        await store.api_keys.delete(ALICE, first.id)
        second = api_key(BOB, "hash-1")
        await store.api_keys.create(second)
        assert await store.api_keys.get_by_hash("hash-1") == second

    async def test_touch_records_when_the_key_was_used(self, store: Store) -> None:
        key = api_key(ALICE, "hash-1")
        await store.api_keys.create(key)
        used = at(42)
        await store.api_keys.touch(key.id, used)
        stored = await store.api_keys.get_by_hash("hash-1")
        assert stored is not None and stored.used_at == used
        assert stored.model_copy(update={"used_at": None}) == key

    async def test_touching_an_unknown_key_creates_nothing(self, store: Store) -> None:
        await store.api_keys.touch("no-such-key", at(1))
        assert await store.api_keys.count() == 0

    async def test_count_spans_every_account(self, store: Store) -> None:
        assert await store.api_keys.count() == 0
        bob_key = api_key(BOB, "h3")
        for key in (api_key(ALICE, "h1"), api_key(ALICE, "h2"), bob_key):
            await store.api_keys.create(key)
        assert await store.api_keys.count() == 3
        await store.api_keys.delete(BOB, bob_key.id)
        assert await store.api_keys.count() == 2


class TestGateways:
    async def test_created_gateway_is_found_by_id_and_slug(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        assert await store.gateways.get(ALICE, support.id) == support
        assert await store.gateways.get_by_slug(ALICE, "support") == support
        assert await store.gateways.get_by_slug(ALICE, "sales") is None

    async def test_another_account_cannot_see_it(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        assert await store.gateways.get(BOB, support.id) is None
        assert await store.gateways.get_by_slug(BOB, "support") is None
        assert await store.gateways.list_for_account(BOB) == []

    async def test_slug_taken_in_the_account_conflicts_on_create(self, store: Store) -> None:
        await store.gateways.create(gateway(ALICE, "support"))
        with pytest.raises(ConflictError):
            await store.gateways.create(gateway(ALICE, "support"))
        assert len(await store.gateways.list_for_account(ALICE)) == 1

    async def test_the_same_slug_is_free_in_another_account(self, store: Store) -> None:
        await store.gateways.create(gateway(ALICE, "support"))
        bobs = gateway(BOB, "support")
        await store.gateways.create(bobs)
        assert await store.gateways.get_by_slug(BOB, "support") == bobs

    async def test_list_is_oldest_first(self, store: Store) -> None:
        for slug, minute in [("b", 3), ("a", 1), ("c", 7)]:
            await store.gateways.create(gateway(ALICE, slug, at(minute)))
        assert [g.slug for g in await store.gateways.list_for_account(ALICE)] == ["a", "b", "c"]

    async def test_update_replaces_fields_and_keeps_the_slug(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        renamed = support.model_copy(update={"name": "Helpdesk"})
        await store.gateways.update(renamed)
        assert await store.gateways.get_by_slug(ALICE, "support") == renamed

    async def test_update_to_a_new_slug_moves_the_lookup_and_frees_the_old_one(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        await store.gateways.update(support.model_copy(update={"slug": "helpdesk"}))
        moved = await store.gateways.get_by_slug(ALICE, "helpdesk")
        assert moved is not None and moved.id == support.id
        assert await store.gateways.get_by_slug(ALICE, "support") is None
        await store.gateways.create(gateway(ALICE, "support"))
        assert len(await store.gateways.list_for_account(ALICE)) == 2

    async def test_update_to_a_taken_slug_conflicts_and_changes_nothing(self, store: Store) -> None:
        support, sales = gateway(ALICE, "support"), gateway(ALICE, "sales")
        await store.gateways.create(support)
        await store.gateways.create(sales)
        with pytest.raises(ConflictError):
            await store.gateways.update(sales.model_copy(update={"slug": "support", "name": "Stolen"}))
        assert await store.gateways.get(ALICE, sales.id) == sales
        assert await store.gateways.get_by_slug(ALICE, "sales") == sales
        assert await store.gateways.get_by_slug(ALICE, "support") == support

    async def test_update_from_another_account_is_ignored(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        await store.gateways.update(support.model_copy(update={"account_id": BOB, "name": "Hijacked"}))
        assert await store.gateways.get(ALICE, support.id) == support
        assert await store.gateways.get(BOB, support.id) is None

    async def test_delete_is_scoped_by_account_and_frees_the_slug(self, store: Store) -> None:
        support = gateway(ALICE, "support")
        await store.gateways.create(support)
        assert await store.gateways.delete(BOB, support.id) is False
        assert await store.gateways.get(ALICE, support.id) == support
        assert await store.gateways.delete(ALICE, support.id) is True
        assert await store.gateways.get(ALICE, support.id) is None
        assert await store.gateways.get_by_slug(ALICE, "support") is None
        assert await store.gateways.list_for_account(ALICE) == []
        assert await store.gateways.delete(ALICE, support.id) is False
        await store.gateways.create(gateway(ALICE, "support"))


class TestChatClients:
    async def test_created_client_reads_back_equal(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        web.client_parameters.allowed_frame_origins.append("https://shop.example.com")
        await store.chat_clients.create(web)
        assert await store.chat_clients.get(ALICE, web.id) == web
        assert await store.chat_clients.get(ALICE, "no-such-client") is None

    async def test_creating_the_same_id_twice_conflicts(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        with pytest.raises(ConflictError):
            await store.chat_clients.create(web.model_copy(update={"name": "impostor"}))
        assert [c.name for c in await store.chat_clients.list_for_account(ALICE)] == ["web"]

    async def test_list_holds_only_the_accounts_clients_oldest_first(self, store: Store) -> None:
        for name, minute in [("second", 4), ("first", 1), ("third", 8)]:
            await store.chat_clients.create(chat_client(ALICE, name, at(minute)))
        await store.chat_clients.create(chat_client(BOB, "bobs", at(2)))
        assert [c.name for c in await store.chat_clients.list_for_account(ALICE)] == ["first", "second", "third"]
        assert [c.name for c in await store.chat_clients.list_for_account(BOB)] == ["bobs"]
        assert await store.chat_clients.list_for_account("account-nobody") == []

    async def test_another_account_cannot_get_it(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        assert await store.chat_clients.get(BOB, web.id) is None
        assert await store.chat_clients.list_for_account(BOB) == []

    async def test_update_replaces_the_document(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        changed = web.model_copy(update={"name": "Web chat", "ai_gateway_id": "gw-1"})
        await store.chat_clients.update(changed)
        assert await store.chat_clients.get(ALICE, web.id) == changed
        assert await store.chat_clients.list_for_account(ALICE) == [changed]

    async def test_update_from_another_account_is_ignored(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        await store.chat_clients.update(web.model_copy(update={"account_id": BOB, "name": "Hijacked"}))
        assert await store.chat_clients.get(ALICE, web.id) == web
        assert await store.chat_clients.get(BOB, web.id) is None
        assert await store.chat_clients.list_for_account(BOB) == []

    async def test_update_of_an_unknown_id_is_ignored(self, store: Store) -> None:
        ghost = chat_client(ALICE, "ghost")
        await store.chat_clients.update(ghost)
        assert await store.chat_clients.get(ALICE, ghost.id) is None
        assert await store.chat_clients.list_for_account(ALICE) == []

    async def test_delete_is_scoped_by_account(self, store: Store) -> None:
        web, kept = chat_client(ALICE, "web"), chat_client(ALICE, "kept")
        for client in (web, kept):
            await store.chat_clients.create(client)
        assert await store.chat_clients.delete(BOB, web.id) is False
        assert await store.chat_clients.get(ALICE, web.id) == web
        assert await store.chat_clients.delete(ALICE, web.id) is True
        assert await store.chat_clients.get(ALICE, web.id) is None
        assert await store.chat_clients.list_for_account(ALICE) == [kept]
        assert await store.chat_clients.delete(ALICE, web.id) is False

    async def test_delete_leaves_the_clients_sessions_to_the_caller(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        chat = session(client_id=web.id)
        await store.sessions.create(chat)
        assert await store.chat_clients.delete(ALICE, web.id) is True
        assert await store.sessions.list_for_client(ALICE, web.id) == [chat]


class TestSessions:
    async def test_created_session_is_found_by_id_and_access_key(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        assert await store.sessions.get(ALICE, chat.id) == chat
        assert await store.sessions.get_by_access_key("ak-1") == chat
        assert await store.sessions.get_by_access_key("ak-2") is None

    async def test_another_account_cannot_get_it(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        assert await store.sessions.get(BOB, chat.id) is None

    async def test_an_access_key_is_unique(self, store: Store) -> None:
        await store.sessions.create(session(access_key="ak-1"))
        with pytest.raises(ConflictError):
            await store.sessions.create(session(account_id=BOB, access_key="ak-1"))
        assert await store.sessions.list_for_client(BOB, "client-1") == []

    async def test_update_persists_changes(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        changed = chat.model_copy(update={"tag": "user-7", "metadata": {"plan": "pro"}})
        await store.sessions.update(changed)
        assert await store.sessions.get(ALICE, chat.id) == changed

    async def test_update_can_change_the_access_key(self, store: Store) -> None:
        chat = session(access_key="ak-old")
        await store.sessions.create(chat)
        assert await store.sessions.get_by_access_key("ak-old") == chat  # looked up before the change
        rotated = chat.model_copy(update={"access_key": "ak-new"})
        await store.sessions.update(rotated)
        assert await store.sessions.get_by_access_key("ak-new") == rotated
        assert await store.sessions.get_by_access_key("ak-old") is None

    async def test_a_deleted_or_moved_access_key_is_not_found_after_a_lookup(self, store: Store) -> None:
        first, second = session(access_key="ak-1"), session(access_key="ak-2")
        for chat in (first, second):
            await store.sessions.create(chat)
            assert await store.sessions.get_by_access_key(chat.access_key) == chat
        await store.sessions.delete(ALICE, first.id)
        assert await store.sessions.get_by_access_key("ak-1") is None
        await store.sessions.update(second.model_copy(update={"access_key": "ak-3"}))
        taker = session(access_key="ak-2")  # the freed key now belongs to another session
        await store.sessions.create(taker)
        assert await store.sessions.get_by_access_key("ak-2") == taker

    async def test_update_to_a_taken_access_key_conflicts(self, store: Store) -> None:
        first, second = session(access_key="ak-1"), session(access_key="ak-2")
        await store.sessions.create(first)
        await store.sessions.create(second)
        with pytest.raises(ConflictError):
            await store.sessions.update(second.model_copy(update={"access_key": "ak-1"}))
        assert await store.sessions.get_by_access_key("ak-1") == first
        assert await store.sessions.get_by_access_key("ak-2") == second

    async def test_list_for_client_holds_only_that_clients_sessions_oldest_first(self, store: Store) -> None:
        late, early = session(access_key="late", created_at=at(9)), session(access_key="early", created_at=at(2))
        other_client = session(client_id="client-2", access_key="other-client")
        other_account = session(account_id=BOB, access_key="other-account")
        for chat in (late, other_client, early, other_account):
            await store.sessions.create(chat)
        listed = await store.sessions.list_for_client(ALICE, "client-1")
        assert [s.access_key for s in listed] == ["early", "late"]

    async def test_delete_removes_the_session_and_its_messages_only(self, store: Store) -> None:
        doomed, kept = session(access_key="ak-doomed"), session(access_key="ak-kept")
        for chat in (doomed, kept):
            await store.sessions.create(chat)
            await store.messages.append(message(chat.id, f"hello from {chat.access_key}"))
        assert await store.sessions.delete(BOB, doomed.id) is False
        assert await store.sessions.delete(ALICE, doomed.id) is True
        assert await store.sessions.get(ALICE, doomed.id) is None
        assert await store.sessions.get_by_access_key("ak-doomed") is None
        assert await store.messages.list(doomed.id) == []
        assert [m.content for m in await store.messages.list(kept.id)] == ["hello from ak-kept"]
        assert [s.id for s in await store.sessions.list_for_client(ALICE, "client-1")] == [kept.id]
        assert await store.sessions.delete(ALICE, doomed.id) is False

    async def test_update_from_another_account_is_ignored(self, store: Store) -> None:
        chat = session(access_key="ak-1", tag="user-7")
        await store.sessions.create(chat)
        hijacked = chat.model_copy(update={"account_id": BOB, "access_key": "ak-stolen", "tag": "user-8"})
        await store.sessions.update(hijacked)
        assert await store.sessions.get(ALICE, chat.id) == chat
        assert await store.sessions.get(BOB, chat.id) is None
        assert await store.sessions.get_by_access_key("ak-1") == chat
        assert await store.sessions.get_by_access_key("ak-stolen") is None
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == chat
        assert await store.sessions.get_by_tag(BOB, "client-1", "user-8") is None
        assert await store.sessions.list_for_client(BOB, "client-1") == []

    async def test_update_of_an_unknown_id_is_ignored(self, store: Store) -> None:
        ghost = session(tag="user-7")
        await store.sessions.update(ghost)
        assert await store.sessions.get(ALICE, ghost.id) is None
        assert await store.sessions.get_by_access_key("ak-1") is None
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") is None
        assert await store.sessions.delete_expired(at(60 * 24 * 365)) == 0


class TestHandoffState:
    """Who answers a chat is part of the session: read with it, set in place, the same on every replica."""

    async def test_a_takeover_is_read_with_the_session_by_every_lookup(self, store: Store) -> None:
        chat = session(tag="Zapi:5511")
        await store.sessions.create(chat)
        takeover = Handoff(state=Controller.HUMAN, by=HandoffTrigger.OPERATOR, reason="typed on the phone",
                           since=at(1), until=at(31))
        stored = await store.sessions.set_handoff(ALICE, chat.id, takeover)
        assert stored is not None and stored.handoff == takeover
        for found in (await store.sessions.get(ALICE, chat.id), await store.sessions.get_by_access_key("ak-1"),
                      await store.sessions.get_by_tag(ALICE, "client-1", "Zapi:5511")):
            assert found is not None and found.handoff == takeover
            assert found.handoff.is_human(at(30)) and not found.handoff.is_human(at(31))
        with_messages = await store.sessions.get_with_messages(ALICE, chat.id)
        assert with_messages is not None and with_messages[0].handoff == takeover

    async def test_setting_it_keeps_the_counters_and_expiry_a_turn_wrote(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        await store.sessions.add_messages(ALICE, chat.id, [message(chat.id, "hi")],
                                          SessionChange(messages=1, tokens=7, expires_at_least=at(3000)))
        back = Handoff(state=Controller.BOT, by=HandoffTrigger.API, since=at(2))
        stored = await store.sessions.set_handoff(ALICE, chat.id, back)
        assert stored is not None
        assert (stored.message_count, stored.token_count, stored.expires_at) == (1, 7, at(3000))
        assert stored.handoff == back
        cleared = await store.sessions.set_handoff(ALICE, chat.id, None)
        assert cleared is not None and cleared.handoff is None and cleared.message_count == 1

    async def test_another_account_or_an_unknown_session_changes_nothing(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        takeover = Handoff(state=Controller.HUMAN, by=HandoffTrigger.API, since=at(1))
        assert await store.sessions.set_handoff(BOB, chat.id, takeover) is None
        assert await store.sessions.set_handoff(ALICE, "no-such-session", takeover) is None
        found = await store.sessions.get(ALICE, chat.id)
        assert found is not None and found.handoff is None


class TestSessionTags:
    async def test_get_by_tag_returns_the_newest_session_with_that_tag(self, store: Store) -> None:
        oldest = session(access_key="oldest", created_at=at(1), tag="user-7")
        newest = session(access_key="newest", created_at=at(5), tag="user-7")
        middle = session(access_key="middle", created_at=at(3), tag="user-7")
        other_tag = session(access_key="other-tag", created_at=at(9), tag="user-8")
        untagged = session(access_key="untagged", created_at=at(10))
        for chat in (oldest, newest, middle, other_tag, untagged):
            await store.sessions.create(chat)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == newest
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-8") == other_tag

    async def test_get_by_tag_finds_nothing_for_another_tag_client_or_account(self, store: Store) -> None:
        await store.sessions.create(session(tag="user-7"))
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-9") is None
        assert await store.sessions.get_by_tag(ALICE, "client-1", "") is None
        assert await store.sessions.get_by_tag(ALICE, "client-2", "user-7") is None
        assert await store.sessions.get_by_tag(BOB, "client-1", "user-7") is None

    async def test_get_by_tag_returns_expired_sessions_too(self, store: Store) -> None:
        expired = session(tag="user-7", expires_at=at(-1))
        await store.sessions.create(expired)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == expired

    async def test_equal_creation_times_break_the_tie_by_the_highest_id(self, store: Store) -> None:
        low = session(access_key="low", tag="user-7").model_copy(update={"id": "session-a"})
        high = session(access_key="high", tag="user-7").model_copy(update={"id": "session-b"})
        for chat in (high, low):
            await store.sessions.create(chat)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == high

    async def test_a_tag_may_hold_any_characters(self, store: Store) -> None:
        odd = session(tag="whatsapp:+33 6 12:*?[x]")
        await store.sessions.create(odd)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "whatsapp:+33 6 12:*?[x]") == odd
        assert await store.sessions.get_by_tag(ALICE, "client-1", "whatsapp") is None

    async def test_deleting_the_newest_makes_the_previous_one_found(self, store: Store) -> None:
        older = session(access_key="older", created_at=at(1), tag="user-7")
        newer = session(access_key="newer", created_at=at(2), tag="user-7")
        for chat in (older, newer):
            await store.sessions.create(chat)
        assert await store.sessions.delete(ALICE, newer.id) is True
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == older
        assert await store.sessions.delete(ALICE, older.id) is True
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") is None

    async def test_update_moving_the_tag_moves_the_lookup(self, store: Store) -> None:
        chat = session(tag="user-7")
        await store.sessions.create(chat)
        moved = chat.model_copy(update={"tag": "user-8"})
        await store.sessions.update(moved)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") is None
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-8") == moved
        untagged = moved.model_copy(update={"tag": None})
        await store.sessions.update(untagged)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-8") is None
        assert await store.sessions.get(ALICE, chat.id) == untagged

    async def test_update_tagging_an_older_session_keeps_the_newest_found(self, store: Store) -> None:
        older = session(access_key="older", created_at=at(1))
        newer = session(access_key="newer", created_at=at(2), tag="user-7")
        for chat in (older, newer):
            await store.sessions.create(chat)
        tagged = older.model_copy(update={"tag": "user-7"})
        await store.sessions.update(tagged)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == newer
        await store.sessions.delete(ALICE, newer.id)
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") == tagged


class TestSessionCleanup:
    async def test_delete_expired_removes_due_sessions_and_their_messages_only(self, store: Store) -> None:
        past = session(access_key="past", expires_at=at(10), tag="user-7")
        due = session(access_key="due", expires_at=at(20))
        live = session(access_key="live", expires_at=at(20.5), tag="user-8")
        for chat in (past, due, live):
            await store.sessions.create(chat)
            await store.messages.append(message(chat.id, f"hello from {chat.access_key}"))
        assert await store.sessions.delete_expired(at(20)) == 2
        for gone in (past, due):
            assert await store.sessions.get(ALICE, gone.id) is None
            assert await store.sessions.get_by_access_key(gone.access_key) is None
            assert await store.messages.list(gone.id) == []
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-7") is None
        assert await store.sessions.list_for_client(ALICE, "client-1") == [live]
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-8") == live
        assert [m.content for m in await store.messages.list(live.id)] == ["hello from live"]
        assert await store.sessions.delete_expired(at(20)) == 0

    async def test_delete_expired_spans_accounts_and_clients(self, store: Store) -> None:
        for n, (account_id, client_id) in enumerate([(ALICE, "client-1"), (ALICE, "client-2"), (BOB, "client-1")]):
            await store.sessions.create(session(account_id, client_id, f"ak-{n}", expires_at=at(1)))
        assert await store.sessions.delete_expired(at(1)) == 3
        assert await store.sessions.list_for_client(BOB, "client-1") == []

    async def test_delete_expired_respects_the_limit(self, store: Store) -> None:
        for n in range(5):
            await store.sessions.create(session(access_key=f"ak-{n}", expires_at=at(n)))
        await store.sessions.create(session(access_key="live", expires_at=at(100)))
        assert await store.sessions.delete_expired(at(50), limit=2) == 2
        assert len(await store.sessions.list_for_client(ALICE, "client-1")) == 4
        assert await store.sessions.delete_expired(at(50), limit=2) == 2
        assert await store.sessions.delete_expired(at(50), limit=2) == 1
        assert await store.sessions.delete_expired(at(50), limit=2) == 0
        assert [s.access_key for s in await store.sessions.list_for_client(ALICE, "client-1")] == ["live"]

    async def test_update_of_expires_at_changes_what_expires(self, store: Store) -> None:
        extended = session(access_key="extended", expires_at=at(10))
        shortened = session(access_key="shortened", expires_at=at(100))
        for chat in (extended, shortened):
            await store.sessions.create(chat)
        await store.sessions.update(extended.model_copy(update={"expires_at": at(100)}))
        await store.sessions.update(shortened.model_copy(update={"expires_at": at(10)}))
        assert await store.sessions.delete_expired(at(50)) == 1
        assert [s.access_key for s in await store.sessions.list_for_client(ALICE, "client-1")] == ["extended"]
        assert await store.sessions.delete_expired(at(100)) == 1
        assert await store.sessions.list_for_client(ALICE, "client-1") == []

    async def test_delete_for_client_removes_that_clients_sessions_and_messages_only(self, store: Store) -> None:
        doomed = [session(access_key=f"doomed-{n}", tag=f"user-{n}") for n in range(3)]
        other_client = session(client_id="client-2", access_key="other-client", tag="user-0")
        other_account = session(account_id=BOB, access_key="other-account", tag="user-0")
        for chat in (*doomed, other_client, other_account):
            await store.sessions.create(chat)
            await store.messages.append(message(chat.id, f"hello from {chat.access_key}"))
        assert await store.sessions.delete_for_client(BOB, "client-9") == 0
        assert await store.sessions.delete_for_client(ALICE, "client-1") == 3
        assert await store.sessions.list_for_client(ALICE, "client-1") == []
        for gone in doomed:
            assert await store.sessions.get(ALICE, gone.id) is None
            assert await store.sessions.get_by_access_key(gone.access_key) is None
            assert await store.messages.list(gone.id) == []
        assert await store.sessions.get_by_tag(ALICE, "client-1", "user-0") is None
        assert await store.sessions.get_by_tag(ALICE, "client-2", "user-0") == other_client
        assert await store.sessions.get_by_tag(BOB, "client-1", "user-0") == other_account
        for kept in (other_client, other_account):
            assert [m.content for m in await store.messages.list(kept.id)] == [f"hello from {kept.access_key}"]
        assert await store.sessions.delete_for_client(ALICE, "client-1") == 0
        assert await store.sessions.delete_expired(at(60 * 24 * 365)) == 2


class TestTurnWrites:
    """sessions.add_messages: a turn's messages and its session's counters land together."""

    async def test_messages_are_appended_and_the_stored_session_changed(self, store: Store) -> None:
        chat = session(expires_at=at(10))
        await store.sessions.create(chat)
        await store.messages.append(message(chat.id, "earlier"))
        renewed = chat.model_copy(update={  # characters a document rewrite must keep as they are
            "extra_context": "set meanwhile: Olá — “café” / ✓ \\ \"q\"\n", "metadata": {"page": "/pricing?a=1&b=2"}})
        await store.sessions.update(renewed)  # the caller's copy (chat) is stale from here
        question, answer = message(chat.id, "question"), message(chat.id, "answer")
        change = SessionChange(messages=2, tokens=40, last_message_at=at(2), last_user_message_at=at(1),
                               expires_at_least=at(30))
        assert await store.sessions.add_messages(ALICE, chat.id, [question, answer], change) is True
        expected = renewed.model_copy(update={
            "message_count": 2, "token_count": 40, "last_message_at": at(2), "last_user_message_at": at(1),
            "expires_at": at(30)})
        assert await store.sessions.get(ALICE, chat.id) == expected
        assert [m.content for m in await store.messages.list(chat.id)] == ["earlier", "question", "answer"]
        assert await store.sessions.delete_expired(at(20)) == 0  # the renewal moved its expiry

    async def test_counters_add_up_and_a_later_expiry_is_kept(self, store: Store) -> None:
        chat = session(expires_at=at(60))
        await store.sessions.create(chat)
        for n in range(3):
            await store.sessions.add_messages(ALICE, chat.id, [message(chat.id, f"m{n}")],
                                              SessionChange(messages=1, tokens=5, expires_at_least=at(30)))
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None
        assert (stored.message_count, stored.token_count, stored.expires_at) == (3, 15, at(60))
        assert stored.last_message_at is None

    async def test_a_session_gone_or_of_another_account_gets_nothing(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        change = SessionChange(messages=1)
        assert await store.sessions.add_messages(BOB, chat.id, [message(chat.id, "x")], change) is False
        assert await store.sessions.add_messages(ALICE, "s-unknown", [message("s-unknown", "x")], change) is False
        assert await store.messages.list(chat.id) == []
        assert await store.messages.list("s-unknown") == []
        assert await store.sessions.get(ALICE, chat.id) == chat

    async def test_a_turns_last_write_frees_its_lease_only_while_the_token_holds_it(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        token = await store.locks.acquire("session-lease", ttl_seconds=30)
        assert token is not None
        other = await store.locks.acquire("other-lease", ttl_seconds=30)
        assert other is not None
        change = SessionChange(messages=1)
        stale = HeldLease("other-lease", "not-the-token")
        assert await store.sessions.add_messages(ALICE, chat.id, [message(chat.id, "q")], change, freeing=stale)
        assert await store.locks.acquire("other-lease", ttl_seconds=30) is None  # still the holder's
        held = HeldLease("session-lease", token)
        assert await store.sessions.add_messages(ALICE, chat.id, [message(chat.id, "a")], change, freeing=held)
        assert [m.content for m in await store.messages.list(chat.id)] == ["q", "a"]
        assert await store.locks.acquire("session-lease", ttl_seconds=30) is not None  # free for the next turn

    async def test_a_lease_is_freed_by_a_write_that_finds_the_session_gone(self, store: Store) -> None:
        """The holder is done either way: a turn whose session ended must not keep the next one waiting."""
        token = await store.locks.acquire("session-lease", ttl_seconds=30)
        assert token is not None
        gone = await store.sessions.add_messages(ALICE, "s-unknown", [message("s-unknown", "x")],
                                                 SessionChange(messages=1), freeing=HeldLease("session-lease", token))
        assert gone is False
        assert await store.locks.acquire("session-lease", ttl_seconds=30) is not None

    async def test_a_turns_lease_is_taken_with_its_history_read_under_it(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        said = [message(chat.id, "one"), message(chat.id, "two")]
        await store.sessions.add_messages(ALICE, chat.id, said, SessionChange(messages=2))
        stored = await store.sessions.get(ALICE, chat.id)
        leased = await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30)
        assert leased is not None and leased.found == (stored, said)
        assert await store.locks.acquire("session-lease", ttl_seconds=30) is None  # one turn at a time
        assert await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30) is None
        await store.locks.release("session-lease", leased.token)  # the token is the lease's, as acquire's
        again = await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30)
        assert again is not None and again.found == (stored, said) and again.token != leased.token

    async def test_a_lease_taken_with_the_history_of_a_session_gone_is_held_all_the_same(self, store: Store) -> None:
        """The holder finds the session gone (or another account's) and frees the lease on its way out."""
        chat = session()
        await store.sessions.create(chat)
        for account_id, session_id in ((BOB, chat.id), (ALICE, "s-unknown")):
            leased = await store.sessions.lease_with_messages(account_id, session_id, "session-lease", ttl_seconds=30)
            assert leased is not None and leased.found is None
            assert await store.locks.acquire("session-lease", ttl_seconds=30) is None
            await store.locks.release("session-lease", leased.token)

    async def test_a_lease_taken_with_the_history_expires_when_its_holder_is_gone(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        assert await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=0.2) is not None
        await asyncio.sleep(0.3)  # the holder crashed: nothing refreshed it
        leased = await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30)
        assert leased is not None and leased.found == (chat, [])

    async def test_a_prompt_is_written_with_the_history_read_when_the_turn_takes_it_as_new(self, store: Store) -> None:
        chat = session(expires_at=at(60))
        await store.sessions.create(chat)
        said = [message(chat.id, "q"), Message(session_id=chat.id, role=Role.ASSISTANT, content="a", created_at=T0)]
        await store.sessions.add_messages(ALICE, chat.id, said, SessionChange(messages=2))
        stored = await store.sessions.get(ALICE, chat.id)
        change = SessionChange(messages=1, last_message_at=at(1), last_user_message_at=at(1), expires_at_least=at(90))
        prompt = PromptWrite(message(chat.id, "next", at(1)), change, now=at(1), max_messages=3)
        leased = await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30,
                                                          prompt=prompt)
        assert leased is not None and leased.prompt_written
        assert leased.found == (stored, said)  # as read before the write
        after = await store.sessions.get(ALICE, chat.id)
        assert after is not None
        assert (after.message_count, after.last_user_message_at, after.expires_at) == (3, at(1), at(90))
        assert [m.content for m in await store.messages.list(chat.id)] == ["q", "a", "next"]
        assert await store.sessions.delete_expired(at(61)) == 0  # the renewal moved the expiry index too
        assert await store.sessions.lease_with_messages(ALICE, chat.id, "session-lease", ttl_seconds=30,
                                                        prompt=prompt) is None  # held: nothing written
        assert len(await store.messages.list(chat.id)) == 3

    async def test_a_prompt_is_left_to_the_turn_whenever_the_read_gives_it_a_choice(self, store: Store) -> None:
        """Each case writes nothing, and says so exactly when PromptWrite.fits says so (the Redis script
        checks the same in Lua); the turn then decides from the read (docs/decisions.md)."""
        human, bot = (Handoff(state=state, by=HandoffTrigger.OPERATOR, since=T0, until=until)
                      for state, until in ((Controller.HUMAN, at(0.5)), (Controller.BOT, None)))
        cases = {  # name: (account reading, expires at, handoff, last message's role, stored count, cap, written)
            "live": (ALICE, at(60), None, Role.ASSISTANT, 2, 3, True),
            "given back to the bot": (ALICE, at(60), bot, Role.ASSISTANT, 2, 0, True),
            "first message": (ALICE, at(60), None, None, 0, 1, True),
            "expired": (ALICE, at(1), None, Role.ASSISTANT, 2, 0, False),
            "a takeover on record, though its window passed": (ALICE, at(60), human, Role.ASSISTANT, 2, 0, False),
            "last message the person's": (ALICE, at(60), None, Role.USER, 2, 0, False),
            "cap reached": (ALICE, at(60), None, Role.ASSISTANT, 2, 2, False),
            "another account's": (BOB, at(60), None, Role.ASSISTANT, 2, 0, False),
        }
        for n, (name, (reader, expires_at, handoff, last, count, cap, expected)) in enumerate(cases.items()):
            chat = session(access_key=f"ak-{n}", expires_at=expires_at)
            await store.sessions.create(chat)
            history = [] if last is None else [Message(session_id=chat.id, role=last, content="q", created_at=T0)]
            await store.sessions.add_messages(ALICE, chat.id, history, SessionChange(messages=count))
            if handoff is not None:
                await store.sessions.set_handoff(ALICE, chat.id, handoff)
            before = await store.sessions.get(ALICE, chat.id)
            prompt = PromptWrite(message(chat.id, "new", at(1)), SessionChange(messages=1, last_message_at=at(1)),
                                 now=at(1), max_messages=cap)
            leased = await store.sessions.lease_with_messages(reader, chat.id, f"lease-{n}", ttl_seconds=30,
                                                              prompt=prompt)
            assert leased is not None
            assert leased.prompt_written is expected, name
            assert leased.found is None or prompt.fits(*leased.found) is expected, name
            contents = [m.content for m in await store.messages.list(chat.id)]
            assert contents == [m.content for m in history] + (["new"] if expected else []), name
            if not expected:
                assert await store.sessions.get(ALICE, chat.id) == before, name

    async def test_no_messages_still_changes_the_session(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        assert await store.sessions.add_messages(ALICE, chat.id, [], SessionChange(last_user_message_at=at(5)))
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None and stored.last_user_message_at == at(5)
        assert await store.messages.list(chat.id) == []

    async def test_get_with_messages_reads_both_scoped_to_the_account(self, store: Store) -> None:
        chat, other = session(), session(access_key="ak-2")
        for item in (chat, other):
            await store.sessions.create(item)
        said = [message(chat.id, "one"), message(chat.id, "two")]
        await store.sessions.add_messages(ALICE, chat.id, said, SessionChange(messages=2))
        stored = await store.sessions.get(ALICE, chat.id)
        assert await store.sessions.get_with_messages(ALICE, chat.id) == (stored, said)
        assert await store.sessions.get_with_messages(ALICE, other.id) == (other, [])
        assert await store.sessions.get_with_messages(BOB, chat.id) is None
        assert await store.sessions.get_with_messages(ALICE, "s-unknown") is None

    async def test_get_with_messages_reads_a_long_history_whole_and_in_order(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        said = [message(chat.id, f"m{n}") for n in range(1201)]  # Redis reads the documents in slices of 500
        await store.sessions.add_messages(ALICE, chat.id, said, SessionChange(messages=len(said)))
        found = await store.sessions.get_with_messages(ALICE, chat.id)
        assert found is not None and found[1] == said

    async def test_a_taken_message_id_writes_nothing(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        hello = message(chat.id, "hello")
        await store.messages.append(hello)
        with pytest.raises(ConflictError):
            await store.sessions.add_messages(ALICE, chat.id, [message(chat.id, "new"), hello],
                                              SessionChange(messages=2))
        assert await store.messages.list(chat.id) == [hello]
        assert await store.sessions.get(ALICE, chat.id) == chat


class TestMessages:
    async def test_list_is_in_append_order_not_timestamp_order(self, store: Store) -> None:
        for content, minute in [("one", 5), ("two", 1), ("three", 3)]:
            await store.messages.append(message("s-1", content, at(minute)))
        assert [m.content for m in await store.messages.list("s-1")] == ["one", "two", "three"]

    async def test_messages_read_back_equal_and_stay_in_their_session(self, store: Store) -> None:
        mine = message("s-1", "mine")
        mine.tool_calls.append({"id": "call-1", "type": "function"})
        await store.messages.append(mine)
        await store.messages.append(message("s-2", "theirs"))
        assert await store.messages.list("s-1") == [mine]
        assert await store.messages.list("s-unknown") == []

    async def test_appending_the_same_message_twice_conflicts(self, store: Store) -> None:
        hello = message("s-1", "hello")
        await store.messages.append(hello)
        with pytest.raises(ConflictError):
            await store.messages.append(hello)
        assert await store.messages.list("s-1") == [hello]

    async def test_update_replaces_in_place(self, store: Store) -> None:
        first, middle, last = (message("s-1", text) for text in ("first", "middle", "last"))
        for item in (first, middle, last):
            await store.messages.append(item)
        edited = middle.model_copy(update={"content": "edited", "status": MessageStatus.CANCELLED})
        await store.messages.update(edited)
        assert await store.messages.list("s-1") == [first, edited, last]

    async def test_update_of_an_unknown_message_adds_nothing(self, store: Store) -> None:
        await store.messages.append(message("s-1", "only"))
        await store.messages.update(message("s-1", "stray"))
        assert [m.content for m in await store.messages.list("s-1")] == ["only"]

    async def test_delete_after_removes_every_later_message(self, store: Store) -> None:
        items = [message("s-1", f"m{n}") for n in range(5)]
        for item in items:
            await store.messages.append(item)
        assert await store.messages.delete_after("s-1", items[1].id) == 3
        assert await store.messages.list("s-1") == items[:2]
        assert await store.messages.delete_after("s-1", items[1].id) == 0
        again = message("s-1", "again")
        await store.messages.append(again)
        assert await store.messages.list("s-1") == [*items[:2], again]

    async def test_clear_deletes_every_message_of_the_session_only(self, store: Store) -> None:
        for content in ("one", "two", "three"):
            await store.messages.append(message("s-1", content))
        await store.messages.append(message("s-2", "kept"))
        assert await store.messages.clear("s-1") == 3
        assert await store.messages.list("s-1") == []
        assert [m.content for m in await store.messages.list("s-2")] == ["kept"]
        assert await store.messages.clear("s-1") == 0
        again = message("s-1", "again")
        await store.messages.append(again)
        assert await store.messages.list("s-1") == [again]

    async def test_delete_after_an_unknown_message_deletes_nothing(self, store: Store) -> None:
        await store.messages.append(message("s-1", "kept"))
        assert await store.messages.delete_after("s-1", "no-such-message") == 0
        assert len(await store.messages.list("s-1")) == 1


class TestUsage:
    async def test_totals_sum_every_record_of_the_account(self, store: Store) -> None:
        await store.usage.record(
            [
                usage("gw-1", "model-a", at(5), input_tokens=10, output_tokens=3),
                usage("gw-1", "model-a", at(6), input_tokens=7, output_tokens=2, error=True),
                usage("gw-2", "model-b", at(70), input_tokens=1, output_tokens=1),
                usage("gw-1", "model-a", at(5), account_id=BOB, input_tokens=1000),
            ]
        )
        await store.usage.record([usage("gw-2", "model-b", at(71), input_tokens=2)])
        totals = await store.usage.totals(ALICE)
        assert totals == UsageTotals(requests=4, errors=1, input_tokens=20, output_tokens=6)
        assert totals.total_tokens == 26

    async def test_an_unknown_account_has_zero_totals(self, store: Store) -> None:
        await store.usage.record([])
        assert await store.usage.totals(ALICE) == UsageTotals()
        assert await store.usage.by_model(ALICE) == []

    async def test_totals_filter_by_gateway(self, store: Store) -> None:
        await store.usage.record(
            [usage("gw-1", "model-a", at(1), input_tokens=5), usage("gw-2", "model-a", at(2), input_tokens=50)]
        )
        assert await store.usage.totals(ALICE, gateway_id="gw-2") == UsageTotals(requests=1, input_tokens=50)
        assert await store.usage.totals(ALICE, gateway_id="gw-none") == UsageTotals()

    async def test_since_counts_from_the_start_of_its_hour(self, store: Store) -> None:
        await store.usage.record(
            [
                usage("gw-1", "model-a", at(-1), input_tokens=1),  # 08:59, the hour before
                usage("gw-1", "model-a", at(10), input_tokens=10),  # 09:10
                usage("gw-1", "model-a", at(130), input_tokens=100),  # 11:10
            ]
        )
        assert (await store.usage.totals(ALICE, since=at(50))).input_tokens == 110
        assert (await store.usage.totals(ALICE, since=at(61))).input_tokens == 100
        assert (await store.usage.totals(ALICE, since=at(200))).requests == 0
        in_paris = at(50).astimezone(timezone(timedelta(hours=1)))
        assert (await store.usage.totals(ALICE, gateway_id="gw-1", since=in_paris)).input_tokens == 110

    async def test_by_model_groups_and_sorts_by_model_name(self, store: Store) -> None:
        await store.usage.record(
            [
                usage("gw-1", "zeta", at(1), input_tokens=1, output_tokens=2),
                usage("gw-2", "alpha", at(2), input_tokens=3, error=True),
                usage("gw-1", "alpha", at(90), input_tokens=4, output_tokens=5),
                usage("gw-1", "omega", at(-60), input_tokens=9),
            ]
        )
        assert await store.usage.by_model(ALICE, since=at(0)) == [
            ModelUsage(model="alpha", requests=2, errors=1, input_tokens=7, output_tokens=5),
            ModelUsage(model="zeta", requests=1, input_tokens=1, output_tokens=2),
        ]
        assert [m.model for m in await store.usage.by_model(ALICE)] == ["alpha", "omega", "zeta"]
        assert await store.usage.by_model(BOB) == []


class TestConcurrency:
    async def test_racing_creates_of_one_slug_let_exactly_one_win(self, store: Store) -> None:
        contenders = [gateway(ALICE, "support") for _ in range(8)]
        outcomes = await asyncio.gather(*(store.gateways.create(g) for g in contenders), return_exceptions=True)
        assert sum(outcome is None for outcome in outcomes) == 1
        assert all(isinstance(o, ConflictError) for o in outcomes if o is not None)
        winner = await store.gateways.get_by_slug(ALICE, "support")
        assert winner is not None and [g.id for g in await store.gateways.list_for_account(ALICE)] == [winner.id]

    async def test_racing_appends_all_land(self, store: Store) -> None:
        items = [message("s-1", f"m{n}") for n in range(20)]
        await asyncio.gather(*(store.messages.append(item) for item in items))
        assert sorted(str(m.content) for m in await store.messages.list("s-1")) == sorted(f"m{n}" for n in range(20))

    async def test_racing_renames_to_one_slug_let_exactly_one_win(self, store: Store) -> None:
        contenders = [gateway(ALICE, f"gw-{n}") for n in range(6)]
        for contender in contenders:
            await store.gateways.create(contender)
        renames = (store.gateways.update(g.model_copy(update={"slug": "support"})) for g in contenders)
        outcomes = await asyncio.gather(*renames, return_exceptions=True)
        assert sum(outcome is None for outcome in outcomes) == 1
        slugs = sorted(g.slug for g in await store.gateways.list_for_account(ALICE))
        assert slugs.count("support") == 1 and len(slugs) == 6
        for slug in slugs:
            found = await store.gateways.get_by_slug(ALICE, slug)
            assert found is not None and found.slug == slug


class TestScoping:
    async def test_delete_after_a_message_of_another_session_deletes_nothing(self, store: Store) -> None:
        await store.messages.append(message("s-1", "kept-1"))
        await store.messages.append(message("s-1", "kept-2"))
        foreign = message("s-2", "foreign")
        await store.messages.append(foreign)
        assert await store.messages.delete_after("s-1", foreign.id) == 0
        assert len(await store.messages.list("s-1")) == 2


class TestCounters:
    async def test_increment_counts_per_key(self, store: Store) -> None:
        assert [await store.counters.increment("login:1.2.3.4", ttl_seconds=60) for _ in range(3)] == [1, 2, 3]
        assert await store.counters.increment("login:5.6.7.8", ttl_seconds=60) == 1

    async def test_a_counter_starts_again_after_its_ttl(self, store: Store) -> None:
        assert await store.counters.increment("short", ttl_seconds=1) == 1
        assert await store.counters.increment("short", ttl_seconds=1) == 2
        await asyncio.sleep(1.1)  # the TTL is enforced by the backend's own clock
        assert await store.counters.increment("short", ttl_seconds=1) == 1

    async def test_add_sums_amounts_atomically_and_values_reads_them(self, store: Store) -> None:
        sums = await asyncio.gather(*(store.counters.add("tokens:k", 250, ttl_seconds=60) for _ in range(8)))
        assert sorted(sums) == [250 * n for n in range(1, 9)]  # no addition lost, each saw a distinct sum
        await store.counters.add("spend:k", 7, ttl_seconds=60)
        assert await store.counters.values(["tokens:k", "spend:k", "never"]) == [2000, 7, 0]
        assert await store.counters.values([]) == []


class TestRacingDeletes:
    """Several replicas (or tasks) purging at once count each session once."""

    async def test_racing_delete_expired_counts_each_session_once(self, store: Store) -> None:
        for n in range(10):
            item = session(access_key=f"ak-{n}", expires_at=at(1))
            await store.sessions.create(item)
            await store.messages.append(message(item.id, "x"))
        counts = await asyncio.gather(*(store.sessions.delete_expired(at(5)) for _ in range(4)))
        assert sum(counts) == 10
        assert await store.sessions.list_for_client(ALICE, "client-1") == []

    async def test_racing_delete_for_client_counts_each_session_once(self, store: Store) -> None:
        for n in range(10):
            await store.sessions.create(session(access_key=f"ak-{n}"))
        counts = await asyncio.gather(*(store.sessions.delete_for_client(ALICE, "client-1") for _ in range(4)))
        assert sum(counts) == 10


WINDOW = 3600
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


class TestInbound:
    async def test_a_dedupe_key_is_recorded_once(self, store: Store) -> None:
        first = inbound("m-1")
        assert await store.inbound.record(first, dedupe_seconds=WINDOW) is True
        assert await store.inbound.record(inbound("m-1"), dedupe_seconds=WINDOW) is False
        assert await store.inbound.pending(first.chat) == [first]

    async def test_provider_ids_clients_and_integrations_are_distinct(self, store: Store) -> None:
        variants = [
            inbound("m-1"),
            inbound("m-2"),
            inbound("m-1", client_id="client-2"),
            inbound("m-1", integration=IntegrationType.ZAPI),
        ]
        assert [await store.inbound.record(v, dedupe_seconds=WINDOW) for v in variants] == [True] * 4
        assert len({v.chat for v in variants}) == 3
        assert sorted(m.provider_message_id for m in await store.inbound.pending(variants[0].chat)) == ["m-1", "m-2"]

    async def test_racing_records_of_one_key_store_it_once(self, store: Store) -> None:
        copies = [inbound("m-1") for _ in range(10)]
        outcomes = await asyncio.gather(*(store.inbound.record(c, dedupe_seconds=WINDOW) for c in copies))
        assert outcomes.count(True) == 1
        winner = copies[outcomes.index(True)]
        assert await store.inbound.pending(winner.chat) == [winner]

    async def test_pending_is_in_record_order(self, store: Store) -> None:
        for provider_id in ("m-3", "m-1", "m-2"):
            await store.inbound.record(inbound(provider_id), dedupe_seconds=WINDOW)
        pending = await store.inbound.pending(inbound("x").chat)
        assert [m.provider_message_id for m in pending] == ["m-3", "m-1", "m-2"]

    async def test_an_unknown_chat_has_nothing_pending(self, store: Store) -> None:
        assert await store.inbound.pending(inbound("x").chat) == []
        assert await store.inbound.pending_chats() == []

    async def test_pending_chats_drop_a_chat_once_all_its_messages_are_complete(self, store: Store) -> None:
        a1, b1, a2 = inbound("a1", "chat-a"), inbound("b1", "chat-b"), inbound("a2", "chat-a")
        for record in (a1, b1, a2):
            await store.inbound.record(record, dedupe_seconds=WINDOW)
        assert sorted(c.chat_id for c in await store.inbound.pending_chats()) == ["chat-a", "chat-b"]
        await store.inbound.complete(a1.chat, [a1.id])
        assert sorted(c.chat_id for c in await store.inbound.pending_chats()) == ["chat-a", "chat-b"]
        assert await store.inbound.pending(a1.chat) == [a2]
        await store.inbound.complete(a2.chat, [a2.id])
        assert await store.inbound.pending_chats() == [b1.chat]
        await store.inbound.complete(b1.chat, [b1.id])
        assert await store.inbound.pending_chats() == []

    async def test_pending_chats_round_trip_every_field(self, store: Store) -> None:
        record = inbound("m-1", "+55 11 9:8/7", client_id="client-9", integration=IntegrationType.EVOLUTION)
        await store.inbound.record(record, dedupe_seconds=WINDOW)
        chats = await store.inbound.pending_chats()
        assert chats == [ChatKey(ALICE, "client-9", IntegrationType.EVOLUTION, "+55 11 9:8/7")]
        assert await store.inbound.pending(chats[0]) == [record]

    async def test_complete_only_affects_the_given_chats_ids(self, store: Store) -> None:
        mine, theirs, other = inbound("m-1", "chat-a"), inbound("m-2", "chat-b"), inbound("m-3", "chat-a")
        for record in (mine, theirs, other):
            await store.inbound.record(record, dedupe_seconds=WINDOW)
        await store.inbound.complete(mine.chat, [mine.id, theirs.id, "no-such-id"])
        assert await store.inbound.pending(mine.chat) == [other]
        assert await store.inbound.pending(theirs.chat) == [theirs]
        await store.inbound.complete(mine.chat, [])
        assert await store.inbound.pending(mine.chat) == [other]

    async def test_a_completed_dedupe_key_still_blocks_within_its_window(self, store: Store) -> None:
        first = inbound("m-1")
        await store.inbound.record(first, dedupe_seconds=WINDOW)
        await store.inbound.complete(first.chat, [first.id])
        assert await store.inbound.record(inbound("m-1"), dedupe_seconds=WINDOW) is False
        assert await store.inbound.pending(first.chat) == []

    async def test_a_completed_dedupe_key_is_forgotten_after_its_window(self, store: Store) -> None:
        first = inbound("m-1")
        await store.inbound.record(first, dedupe_seconds=1)
        await store.inbound.complete(first.chat, [first.id])
        await asyncio.sleep(1.1)  # the window is kept by the backend's own clock
        again = inbound("m-1")
        assert await store.inbound.record(again, dedupe_seconds=1) is True
        assert await store.inbound.pending(first.chat) == [again]

    async def test_purge_forgets_answered_records_and_keeps_pending_ones(self, store: Store) -> None:
        answered, waiting = inbound("m-1"), inbound("m-2")
        for record in (answered, waiting):
            await store.inbound.record(record, dedupe_seconds=WINDOW)
        await store.inbound.complete(answered.chat, [answered.id])
        assert await store.inbound.purge(datetime.now(UTC)) == 0
        assert await store.inbound.record(inbound("m-1"), dedupe_seconds=WINDOW) is False
        await store.inbound.purge(FAR_FUTURE)
        assert await store.inbound.purge(FAR_FUTURE) == 0
        assert await store.inbound.pending(waiting.chat) == [waiting]
        assert await store.inbound.record(inbound("m-2"), dedupe_seconds=WINDOW) is False
        again = inbound("m-1")
        assert await store.inbound.record(again, dedupe_seconds=WINDOW) is True
        assert await store.inbound.pending(waiting.chat) == [waiting, again]


class TestLocks:
    async def test_a_held_lease_is_not_given_twice(self, store: Store) -> None:
        token = await store.locks.acquire("chat-1", ttl_seconds=30)
        assert token is not None
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is None
        assert await store.locks.acquire("chat-2", ttl_seconds=30) is not None

    async def test_only_the_holder_releases(self, store: Store) -> None:
        token = await store.locks.acquire("chat-1", ttl_seconds=30)
        assert token is not None
        await store.locks.release("chat-1", "not-the-token")
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is None
        await store.locks.release("chat-1", token)
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is not None

    async def test_only_the_holder_refreshes(self, store: Store) -> None:
        token = await store.locks.acquire("chat-1", ttl_seconds=30)
        assert token is not None
        assert await store.locks.refresh("chat-1", token, ttl_seconds=30) is True
        assert await store.locks.refresh("chat-1", "not-the-token", ttl_seconds=30) is False
        assert await store.locks.refresh("chat-2", token, ttl_seconds=30) is False

    async def test_an_expired_lease_can_be_taken(self, store: Store) -> None:
        stale = await store.locks.acquire("chat-1", ttl_seconds=0.2)
        assert stale is not None
        await asyncio.sleep(0.3)  # the lease is timed by the backend's own clock
        fresh = await store.locks.acquire("chat-1", ttl_seconds=30)
        assert fresh is not None and fresh != stale
        await store.locks.release("chat-1", stale)
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is None

    async def test_a_refreshed_lease_outlives_its_first_ttl(self, store: Store) -> None:
        token = await store.locks.acquire("chat-1", ttl_seconds=0.2)
        assert token is not None
        assert await store.locks.refresh("chat-1", token, ttl_seconds=30) is True
        await asyncio.sleep(0.3)
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is None

    async def test_a_lapsed_lease_is_taken_back_by_its_holder_unless_someone_took_it(self, store: Store) -> None:
        mine = await store.locks.acquire("chat-1", ttl_seconds=0.2)
        theirs = await store.locks.acquire("chat-2", ttl_seconds=0.2)
        assert mine is not None and theirs is not None
        await asyncio.sleep(0.3)  # both lapse, as after a Store outage longer than the lease
        assert await store.locks.acquire("chat-2", ttl_seconds=30) is not None  # another replica took this one
        assert await store.locks.reclaim("chat-1", mine, ttl_seconds=30) is True
        assert await store.locks.reclaim("chat-2", theirs, ttl_seconds=30) is False
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is None  # held again, with the same token
        assert await store.locks.reclaim("chat-1", mine, ttl_seconds=30) is True  # still held: extended
        await store.locks.release("chat-1", mine)
        assert await store.locks.acquire("chat-1", ttl_seconds=30) is not None

    async def test_racing_acquires_give_one_token(self, store: Store) -> None:
        tokens = await asyncio.gather(*(store.locks.acquire("chat-1", ttl_seconds=30) for _ in range(10)))
        assert sum(token is not None for token in tokens) == 1


async def test_an_expired_lease_cannot_be_refreshed(store: Store) -> None:
    token = await store.locks.acquire("chat:expired", ttl_seconds=0.2)
    assert token is not None
    await asyncio.sleep(0.3)  # lease expiry is the backend's own clock
    assert await store.locks.refresh("chat:expired", token, ttl_seconds=5) is False


def scheduled(kind: str = "schedule", *, account: str = ALICE, client: str = "client-1",
              minutes: float = 10, created: float = 0) -> ScheduledItem:
    return ScheduledItem(
        kind=ScheduleKind(kind), account_id=account, chat_client_id=client, external_user_id="Telegram:1",
        target=ScheduleTarget.TELEGRAM, target_identifier="1", reason="follow up", scheduled_time=at(minutes),
        next_activation=at(minutes), created_at=at(created),
    )


class TestSchedules:
    async def test_create_get_update_and_list(self, store: Store) -> None:
        first, second = scheduled(created=1), scheduled("recurring", created=2)
        other_client = scheduled(client="client-2")
        for item in (second, other_client, first):
            await store.schedules.create(item)
        assert await store.schedules.get(ALICE, first.id) == first
        assert await store.schedules.get("someone-else", first.id) is None
        assert [i.id for i in await store.schedules.list_for_client(ALICE, "client-1")] == [first.id, second.id]
        first.execution_count = 1
        first.status = ScheduleStatus.DONE
        await store.schedules.update(first)
        assert (await store.schedules.get(ALICE, first.id)).status is ScheduleStatus.DONE  # type: ignore[union-attr]

    async def test_due_lists_active_items_of_every_account_up_to_a_time(self, store: Store) -> None:
        soon, later, done, bob = scheduled(minutes=5), scheduled(minutes=60), scheduled(minutes=1), \
            scheduled(minutes=2, account="account-bob")
        done.status = ScheduleStatus.DONE
        for item in (later, soon, done, bob):
            await store.schedules.create(item)
        assert [i.id for i in await store.schedules.due(at(10))] == [bob.id, soon.id]
        assert [i.id for i in await store.schedules.due(at(60))] == [bob.id, soon.id, later.id]
        soon.next_activation = at(30)
        await store.schedules.update(soon)
        assert [i.id for i in await store.schedules.due(at(10))] == [bob.id]
        bob.next_activation = None
        await store.schedules.update(bob)
        assert [i.id for i in await store.schedules.due(at(60))] == [soon.id, later.id]

    async def test_another_account_cannot_update_or_delete(self, store: Store) -> None:
        item = scheduled()
        await store.schedules.create(item)
        forged = item.model_copy(update={"account_id": "account-bob", "reason": "hijacked"})
        await store.schedules.update(forged)
        assert (await store.schedules.get(ALICE, item.id)).reason == "follow up"  # type: ignore[union-attr]
        assert await store.schedules.delete("account-bob", item.id) is False
        assert await store.schedules.delete(ALICE, item.id) is True
        assert await store.schedules.get(ALICE, item.id) is None
        assert await store.schedules.due(at(1000)) == []

    async def test_each_firing_is_claimed_once(self, store: Store) -> None:
        results = await asyncio.gather(*(store.schedules.claim("item-1", at(5)) for _ in range(10)))
        assert results.count(True) == 1
        assert await store.schedules.claim("item-1", at(6)) is True
        assert await store.schedules.claim("item-2", at(5)) is True


def memory(
    user: str = "user-1",
    content: str = "likes tea",
    *,
    account_id: str = ALICE,
    updated: float = 0,
    days: float = 30,
    format: MemoryFormat = MemoryFormat.TEXT,
) -> Memory:
    return Memory(
        account_id=account_id, external_user_id=user, format=format, content=content, created_at=at(updated),
        updated_at=at(updated), expires_at=at(updated) + timedelta(days=days),
    )


class TestMemories:
    async def test_created_memory_reads_back_equal_only_in_its_account(self, store: Store) -> None:
        saved = memory()
        await store.memories.create(saved)
        assert await store.memories.get(ALICE, saved.id, now=T0) == saved
        assert await store.memories.get(BOB, saved.id, now=T0) is None
        assert await store.memories.get(ALICE, "unknown", now=T0) is None

    async def test_an_expired_memory_is_never_read(self, store: Store) -> None:
        saved = memory(days=1)
        await store.memories.create(saved)
        expiry = saved.expires_at
        assert await store.memories.get(ALICE, saved.id, now=expiry - timedelta(seconds=1)) == saved
        assert await store.memories.get(ALICE, saved.id, now=expiry) is None
        assert await store.memories.list_for_user(ALICE, "user-1", now=expiry) == []
        assert await store.memories.list_for_account(ALICE, now=expiry) == []

    async def test_list_for_user_is_most_recent_first_and_scoped(self, store: Store) -> None:
        old, new, newest = memory(updated=1), memory(updated=2), memory(updated=3)
        for item in (new, memory("user-2"), memory(account_id=BOB), newest, old):
            await store.memories.create(item)
        listed = await store.memories.list_for_user(ALICE, "user-1", now=at(4))
        assert [m.id for m in listed] == [newest.id, new.id, old.id]
        limited = await store.memories.list_for_user(ALICE, "user-1", now=at(4), limit=2)
        assert [m.id for m in limited] == [newest.id, new.id]

    async def test_the_limit_counts_live_memories_only(self, store: Store) -> None:
        live, expired = memory(updated=1, days=30), memory(updated=2, days=0.001)
        for item in (live, expired):
            await store.memories.create(item)
        listed = await store.memories.list_for_user(ALICE, "user-1", now=at(10), limit=1)
        assert [m.id for m in listed] == [live.id]

    async def test_lists_filter_by_format(self, store: Store) -> None:
        text, reminder = memory(updated=1), memory(updated=2, format=MemoryFormat.DATE_REMINDER)
        for item in (text, reminder):
            await store.memories.create(item)
        by_user = await store.memories.list_for_user(ALICE, "user-1", now=at(3), format=MemoryFormat.TEXT)
        assert [m.id for m in by_user] == [text.id]
        by_account = await store.memories.list_for_account(ALICE, now=at(3), format=MemoryFormat.DATE_REMINDER)
        assert [m.id for m in by_account] == [reminder.id]
        assert [m.id for m in await store.memories.list_for_account(ALICE, now=at(3))] == [reminder.id, text.id]

    async def test_list_for_account_spans_users_most_recent_first(self, store: Store) -> None:
        first, second = memory("user-1", updated=1), memory("user-2", updated=2)
        for item in (first, memory(account_id=BOB), second):
            await store.memories.create(item)
        assert [m.id for m in await store.memories.list_for_account(ALICE, now=at(3))] == [second.id, first.id]

    async def test_equal_times_break_the_tie_by_the_highest_id(self, store: Store) -> None:
        a, b = memory(), memory()
        for item in (a, b):
            await store.memories.create(item)
        expected = sorted([a.id, b.id], reverse=True)
        assert [m.id for m in await store.memories.list_for_user(ALICE, "user-1", now=T0)] == expected

    async def test_a_user_id_may_hold_any_characters(self, store: Store) -> None:
        odd = "telegram:+33 6*[x]@device:1"
        saved = memory(odd)
        await store.memories.create(saved)
        assert [m.id for m in await store.memories.list_for_user(ALICE, odd, now=T0)] == [saved.id]
        assert await store.memories.list_for_user(ALICE, "telegram:+33 6*", now=T0) == []

    async def test_update_replaces_content_reorders_and_moves_the_expiry(self, store: Store) -> None:
        old, new = memory(updated=1, days=1), memory(updated=2)
        for item in (old, new):
            await store.memories.create(item)
        changed = old.model_copy(update={"content": "likes coffee", "updated_at": at(3),
                                         "expires_at": at(3) + timedelta(days=60)})
        assert await store.memories.update(changed) is True
        now = at(3) + timedelta(days=45)
        assert [m.id for m in await store.memories.list_for_user(ALICE, "user-1", now=now)] == [old.id]
        assert await store.memories.get(ALICE, old.id, now=at(4)) == changed
        listed = await store.memories.list_for_user(ALICE, "user-1", now=at(4))
        assert [m.id for m in listed] == [old.id, new.id]

    async def test_update_of_another_account_user_or_unknown_id_writes_nothing(self, store: Store) -> None:
        saved = memory()
        await store.memories.create(saved)
        for forged in (
            saved.model_copy(update={"account_id": BOB, "content": "hijacked"}),
            saved.model_copy(update={"external_user_id": "user-2", "content": "hijacked"}),
            memory(content="never stored"),
        ):
            assert await store.memories.update(forged) is False
        assert await store.memories.get(ALICE, saved.id, now=T0) == saved
        assert await store.memories.list_for_user(ALICE, "user-2", now=T0) == []
        assert len(await store.memories.list_for_account(ALICE, now=T0)) == 1

    async def test_l8_count_for_user_counts_live_memories_of_every_format_for_that_user_only(
        self, store: Store
    ) -> None:
        for item in (memory(updated=1), memory(updated=2, format=MemoryFormat.DATE_REMINDER),
                     memory(updated=3, days=0.001), memory("user-2"), memory(account_id=BOB),
                     memory("user-1@device")):
            await store.memories.create(item)
        assert await store.memories.count_for_user(ALICE, "user-1", now=at(10)) == 2
        assert await store.memories.count_for_user(ALICE, "user-1", now=at(1)) == 3
        assert await store.memories.count_for_user(ALICE, "nobody", now=at(10)) == 0
        assert await store.memories.count_for_user(BOB, "user-1", now=at(10)) == 1

    async def test_l8_a_limited_read_pages_past_expired_memories(self, store: Store) -> None:
        """More expired memories than one page sit in front of the live ones: the limit is still filled."""
        live = [memory(updated=i) for i in range(3)]
        expired = [memory(updated=10 + i, days=0.001) for i in range(70)]
        for item in (*live, *expired):
            await store.memories.create(item)
        listed = await store.memories.list_for_user(ALICE, "user-1", now=at(200), limit=2)
        assert [m.id for m in listed] == [live[2].id, live[1].id]

    async def test_delete_is_scoped_by_account_and_reports_live_memories_only(self, store: Store) -> None:
        live, expired = memory(), memory(days=0.001)
        for item in (live, expired):
            await store.memories.create(item)
        assert await store.memories.delete(BOB, live.id, now=at(10)) is False
        assert await store.memories.delete(ALICE, live.id, now=at(10)) is True
        assert await store.memories.delete(ALICE, live.id, now=at(10)) is False
        assert await store.memories.delete(ALICE, expired.id, now=at(10)) is False
        assert await store.memories.get(ALICE, expired.id, now=T0) is None
        assert await store.memories.list_for_account(ALICE, now=T0) == []

    async def test_delete_for_user_takes_the_user_and_its_at_suffixed_ids_in_one_format(self, store: Store) -> None:
        doomed = [memory("user-1"), memory("user-1@device-a"), memory("user-1@device-b", days=0.001)]
        kept = [
            memory("user-10"), memory("user-1", format=MemoryFormat.DATE_REMINDER), memory("user-1", account_id=BOB),
            memory("xuser-1"),
        ]
        for item in (*doomed, *kept):
            await store.memories.create(item)
        assert await store.memories.delete_for_user(ALICE, "user-1", MemoryFormat.TEXT, now=at(10)) == 2
        remaining = await store.memories.list_for_account(ALICE, now=T0)
        assert {m.id for m in remaining} == {kept[0].id, kept[1].id, kept[3].id}
        assert len(await store.memories.list_for_account(BOB, now=T0)) == 1
        assert await store.memories.delete_for_user(ALICE, "user-1", MemoryFormat.TEXT, now=at(10)) == 0

    async def test_racing_bulk_deletes_count_each_memory_once(self, store: Store) -> None:
        for _ in range(5):
            await store.memories.create(memory())
        counts = await asyncio.gather(
            *(store.memories.delete_for_user(ALICE, "user-1", MemoryFormat.TEXT, now=T0) for _ in range(4))
        )
        assert sum(counts) == 5

    async def test_purge_removes_expired_memories_of_every_account_only(self, store: Store) -> None:
        due = [memory(days=1), memory(account_id=BOB, days=1)]
        live = memory(days=3)
        for item in (*due, live):
            await store.memories.create(item)
        now = T0 + timedelta(days=2)
        assert await store.memories.purge(now) == 2
        assert await store.memories.purge(now) == 0
        assert await store.memories.get(ALICE, due[0].id, now=T0) is None
        assert await store.memories.get(BOB, due[1].id, now=T0) is None
        assert await store.memories.get(ALICE, live.id, now=now) == live

    async def test_purge_respects_the_limit(self, store: Store) -> None:
        for _ in range(3):
            await store.memories.create(memory(days=1))
        now = T0 + timedelta(days=2)
        assert await store.memories.purge(now, limit=2) == 2
        assert await store.memories.purge(now, limit=2) == 1

    async def test_an_extended_memory_is_not_purged(self, store: Store) -> None:
        saved = memory(days=1)
        await store.memories.create(saved)
        await store.memories.update(saved.model_copy(update={"expires_at": T0 + timedelta(days=10)}))
        assert await store.memories.purge(T0 + timedelta(days=2)) == 0
        assert await store.memories.get(ALICE, saved.id, now=T0 + timedelta(days=2)) is not None


WRITERS = 20
"""Concurrent writers in the lost-update tests: enough that a read-modify-write of a whole document
would lose some (every backend interleaves them at its awaits)."""


class TestFieldWrites:
    """L4: edits of one part of a record, made at the same time as other edits and counter
    increments, never undo each other (field-level updates, never a whole document written back)."""

    async def test_l4_concurrent_balance_adds_are_all_counted(self, store: Store) -> None:
        alice = account("alice")
        await store.accounts.create(alice)
        balances = await asyncio.gather(
            *(store.accounts.adjust_balance(alice.id, BalanceOperation.ADD, 1.5) for _ in range(WRITERS)))
        assert sorted(balances) == [1.5 * n for n in range(1, WRITERS + 1)]
        assert await store.accounts.adjust_balance(alice.id, BalanceOperation.REMOVE, 10) == 1.5 * WRITERS - 10
        assert await store.accounts.adjust_balance(alice.id, BalanceOperation.SET, 7.25) == 7.25
        stored = await store.accounts.get(alice.id)
        assert stored is not None and stored.balance == 7.25
        assert await store.accounts.adjust_balance("nobody", BalanceOperation.ADD, 1) is None

    async def test_l4_disabling_survives_concurrent_edits_of_other_fields(self, store: Store) -> None:
        alice = account("alice")
        await store.accounts.create(alice)
        renames = [store.accounts.change(alice.id, AccountChange(name=f"Alice {n}")) for n in range(WRITERS)]
        adds = [store.accounts.adjust_balance(alice.id, BalanceOperation.ADD, 1) for _ in range(WRITERS)]
        disabling = store.accounts.change(alice.id, AccountChange(disabled=True, plan=Plan.PRO))
        await asyncio.gather(*renames[:10], disabling, *adds, *renames[10:])
        stored = await store.accounts.get(alice.id)
        assert stored is not None
        assert (stored.disabled, stored.plan, stored.balance) == (True, Plan.PRO, float(WRITERS))
        assert stored.name.startswith("Alice ") and stored.salt == alice.salt

    async def test_l4_change_returns_the_stored_account_and_ignores_unknown_ids(self, store: Store) -> None:
        alice = account("alice")
        await store.accounts.create(alice)
        parameters = AccountParameters(automatic_json_healing=True)
        parameters.notifications.emails.append("ops@example.com")
        changed = await store.accounts.change(alice.id, AccountChange(parameters=parameters, disabled=False))
        assert changed == alice.model_copy(update={"parameters": parameters})
        assert await store.accounts.get(alice.id) == changed
        assert await store.accounts.change("nobody", AccountChange(disabled=True)) is None
        assert await store.accounts.get("nobody") is None

    async def test_l4_concurrent_key_creation_never_passes_the_limit(self, store: Store) -> None:
        created = await asyncio.gather(
            *(store.api_keys.create_within(api_key(ALICE, f"hash-{n}"), limit=5) for n in range(WRITERS)))
        assert created.count(True) == 5
        assert len(await store.api_keys.list_for_account(ALICE)) == 5
        assert await store.api_keys.create_within(api_key(BOB, "hash-bob"), limit=5) is True  # per account
        with pytest.raises(ConflictError):
            await store.api_keys.create_within(api_key(BOB, "hash-bob"), limit=5)

    async def test_l4_renewals_keep_the_counters_a_turn_adds_meanwhile(self, store: Store) -> None:
        chat = session(tag="user-1", expires_at=at(10))
        await store.sessions.create(chat)
        context = SessionContext(extra_context="plan: gold", context_location=None, metadata={"page": "/"})
        turns = [store.sessions.add_messages(ALICE, chat.id, [message(chat.id, f"m{n}")],
                                             SessionChange(messages=1, tokens=3)) for n in range(WRITERS)]
        renewals = [store.sessions.renew(ALICE, chat.id, expires_at=at(20 + n), context=context)
                    for n in range(WRITERS)]
        await asyncio.gather(*(write for pair in zip(turns, renewals, strict=True) for write in pair))
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None
        assert (stored.message_count, stored.token_count) == (WRITERS, 3 * WRITERS)
        assert (stored.extra_context, stored.metadata) == ("plan: gold", {"page": "/"})
        assert stored.expires_at in {at(20 + n) for n in range(WRITERS)}  # one of them, whichever came last
        assert await store.sessions.delete_expired(stored.expires_at - timedelta(seconds=1)) == 0
        assert await store.sessions.delete_expired(stored.expires_at) == 1  # the expiry index followed

    async def test_l4_renewing_extend_only_never_shortens_and_keeps_the_context(self, store: Store) -> None:
        chat = session(tag="user-1", expires_at=at(60))
        chat.extra_context = "kept"
        await store.sessions.create(chat)
        renewed = await store.sessions.renew(ALICE, chat.id, expires_at=at(30), extend_only=True)
        assert renewed == chat
        renewed = await store.sessions.renew(ALICE, chat.id, expires_at=at(90), extend_only=True)
        assert renewed == chat.model_copy(update={"expires_at": at(90)})
        assert await store.sessions.get(ALICE, chat.id) == renewed
        assert await store.sessions.delete_expired(at(80)) == 0
        assert await store.sessions.renew(BOB, chat.id, expires_at=at(999)) is None
        assert await store.sessions.renew(ALICE, "s-unknown", expires_at=at(999)) is None
        assert await store.sessions.delete_expired(at(95)) == 1  # BOB's renewal changed nothing

    async def test_l4_delivery_errors_and_recounts_keep_concurrent_counters(self, store: Store) -> None:
        chat = session()
        await store.sessions.create(chat)
        await store.sessions.add_messages(ALICE, chat.id, [], SessionChange(messages=5))
        turns = [store.sessions.add_messages(ALICE, chat.id, [message(chat.id, f"m{n}")],
                                             SessionChange(messages=1, tokens=2)) for n in range(WRITERS)]
        errors = [store.sessions.record_delivery_error(ALICE, chat.id, f"error {n}") for n in range(WRITERS)]
        await asyncio.gather(*errors[:10], store.sessions.recount(ALICE, chat.id, -3), *turns, *errors[10:])
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None
        assert (stored.message_count, stored.token_count) == (5 - 3 + WRITERS, 2 * WRITERS)
        assert stored.last_delivery_error is not None and stored.last_delivery_error.startswith("error ")
        await store.sessions.recount(ALICE, chat.id, -1000)
        await store.sessions.recount(BOB, chat.id, None)
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None and stored.message_count == 0 and stored.token_count == 2 * WRITERS
        await store.sessions.record_delivery_error(ALICE, chat.id, None)
        stored = await store.sessions.get(ALICE, chat.id)
        assert stored is not None and stored.last_delivery_error is None

    async def test_l4_client_edits_never_drop_an_integration_saved_meanwhile(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        await store.chat_clients.create(web)
        telegram = TelegramIntegration(bot_token="123:abc")
        zapi = ZapiIntegration(instance_id="inst", instance_token="tok")
        edits = [store.chat_clients.edit(ALICE, web.id, ClientSettings(
            name=f"web {n}", ai_gateway_id="gw-1", limiting_parameters=LimitingParameters(messages_per_hour=n),
            client_parameters=ClientParameters(primary_color="#000000", page_title=f"Page {n}")))
            for n in range(WRITERS)]
        saves = [store.chat_clients.set_integration(ALICE, web.id, IntegrationType.TELEGRAM, telegram),
                 store.chat_clients.set_integration(ALICE, web.id, IntegrationType.ZAPI, zapi)]
        assert all(await asyncio.gather(*edits[:10], *saves, *edits[10:]))
        stored = await store.chat_clients.get(ALICE, web.id)
        assert stored is not None
        assert stored.integrations.telegram_integration == telegram
        assert stored.integrations.zapi_integration == zapi
        assert stored.name.startswith("web ") and stored.ai_gateway_id == "gw-1"
        assert stored.client_parameters.page_title == f"Page {stored.limiting_parameters.messages_per_hour}"

    async def test_l4_integration_removal_and_foreign_edits(self, store: Store) -> None:
        web = chat_client(ALICE, "web")
        web.integrations.telegram_integration = TelegramIntegration(bot_token="123:abc")
        await store.chat_clients.create(web)
        assert await store.chat_clients.set_integration(ALICE, web.id, IntegrationType.TELEGRAM, None) is True
        settings = ClientSettings(name="stolen", ai_gateway_id=None, limiting_parameters=LimitingParameters(),
                                  client_parameters=web.client_parameters)
        assert await store.chat_clients.edit(BOB, web.id, settings) is False
        assert await store.chat_clients.set_integration(BOB, web.id, IntegrationType.ZAPI, None) is False
        assert await store.chat_clients.edit(ALICE, "no-such-client", settings) is False
        stored = await store.chat_clients.get(ALICE, web.id)
        assert stored == web.model_copy(update={"integrations": Integrations()})
