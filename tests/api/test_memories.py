"""The memories API (seed section "Memories"): shapes, filters, deletion rules and account isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from botline.accounts import create_account
from botline.domain.clock import FrozenClock
from botline.domain.memory import MemoryFormat
from tests.memory.helpers import seed, store_of
from tests.support.server import RunningServer

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


async def test_list_has_the_seed_shape_newest_first_with_a_120_character_preview(server: RunningServer) -> None:
    older = await seed(server, "customer-1", "x" * 300, START - timedelta(hours=2))
    newer = await seed(server, "customer-2", '{"title":"Dentist"}', START - timedelta(hours=1),
                       format=MemoryFormat.DATE_REMINDER)
    status, listed = await server.call("GET", "/api/v1/memories")
    assert status == 200
    assert listed == [
        {"id": newer.id, "externalUserId": "customer-2", "content": '{"title":"Dentist"}', "format": "DateReminder"},
        {"id": older.id, "externalUserId": "customer-1", "content": "x" * 120, "format": "Text"},
    ]


async def test_list_filters_by_id_content_user_and_format(server: RunningServer) -> None:
    tea = await seed(server, "customer-1", "Likes TEA", START)
    jazz = await seed(server, "vip-9", "Likes jazz", START - timedelta(minutes=1))
    reminder = await seed(server, "customer-1", '{"title":"Call"}', START, format=MemoryFormat.DATE_REMINDER)

    async def ids(query: str) -> list[str]:
        status, listed = await server.call("GET", f"/api/v1/memories?{query}")
        assert status == 200, listed
        return [m["id"] for m in listed]

    assert await ids("filter=tea") == [tea.id]
    assert await ids("filter=VIP") == [jazz.id]
    assert await ids(f"filter={jazz.id[:8]}") == [jazz.id]
    assert await ids("format=Text") == [tea.id, jazz.id]
    assert await ids("format=DateReminder&filter=customer-1") == [reminder.id]
    assert await ids("filter=nothing-matches") == []
    status, body = await server.call("GET", "/api/v1/memories?format=Image")
    assert status == 400 and "format" in body["message"]


async def test_view_has_the_seed_shape(server: RunningServer) -> None:
    memory = await seed(server, "customer-1", "y" * 300, START, days=7)
    status, body = await server.call("GET", f"/api/v1/memories/{memory.id}")
    assert status == 200
    assert body == {"id": memory.id, "externalUserId": "customer-1", "content": "y" * 300, "format": "Text",
                    "createdAt": "2026-11-25T09:00:00Z", "expiresAt": "2026-12-02T09:00:00Z"}


async def test_view_of_an_unknown_id_is_404(server: RunningServer) -> None:
    status, body = await server.call("GET", "/api/v1/memories/3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert status == 404 and body["message"] == "Memory not found."


async def test_expired_memories_are_never_listed_or_shown(server: RunningServer, clock: FrozenClock) -> None:
    memory = await seed(server, "customer-1", "short", START, days=1)
    clock.advance(timedelta(days=1))
    assert await server.call("GET", "/api/v1/memories") == (200, [])
    assert (await server.call("GET", f"/api/v1/memories/{memory.id}"))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/memories?id={memory.id}"))[0] == 404


async def test_delete_by_id(server: RunningServer) -> None:
    memory = await seed(server, "customer-1", "bye", START, format=MemoryFormat.DATE_REMINDER)
    kept = await seed(server, "customer-1", "stay", START)
    status, body = await server.call("DELETE", f"/api/v1/memories?id={memory.id}")
    assert status == 200
    assert body == {"message": "Memories deleted successfully.", "removedCount": 1, "externalUserId": "customer-1",
                    "format": "DateReminder"}
    assert (await server.call("GET", f"/api/v1/memories/{memory.id}"))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/memories?id={memory.id}"))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/memories?id={kept.id}&format=DateReminder"))[0] == 404
    assert (await server.call("GET", f"/api/v1/memories/{kept.id}"))[0] == 200


async def test_delete_by_user_and_format_takes_at_suffixed_ids_too(server: RunningServer) -> None:
    for user in ("customer-123", "customer-123@device-a", "customer-123@device-b"):
        await seed(server, user, "text", START)
    others = [
        await seed(server, "customer-1234", "text", START),
        await seed(server, "customer-123", "reminder", START, format=MemoryFormat.DATE_REMINDER),
    ]
    status, body = await server.call("DELETE", "/api/v1/memories?externalUserId=customer-123@device-a&format=Text")
    assert status == 200
    assert body == {"message": "Memories deleted successfully.", "removedCount": 3,
                    "externalUserId": "customer-123@device-a", "format": "Text"}
    _, listed = await server.call("GET", "/api/v1/memories")
    assert {m["id"] for m in listed} == {m.id for m in others}
    status, body = await server.call("DELETE", "/api/v1/memories?externalUserId=customer-123&format=Text")
    assert status == 200 and body["removedCount"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?format=Text",
        "?id=3fa85f64-5717-4562-b3fc-2c963f66afa6&externalUserId=customer-1&format=Text",
        "?externalUserId=customer-1",
        "?externalUserId=customer-1&format=",
        "?externalUserId=customer-1&format=Image",
        "?externalUserId=@only-a-suffix&format=Text",
        "?id=3fa85f64-5717-4562-b3fc-2c963f66afa6&format=Nope",
    ],
)
async def test_invalid_delete_queries_are_400(server: RunningServer, query: str) -> None:
    await seed(server, "customer-1", "kept", START)
    status, body = await server.call("DELETE", f"/api/v1/memories{query}")
    assert status == 400 and body["message"]
    assert len((await server.call("GET", "/api/v1/memories"))[1]) == 1


async def test_delete_of_an_unknown_id_is_404(server: RunningServer) -> None:
    status, body = await server.call("DELETE", "/api/v1/memories?id=3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert status == 404 and body["message"] == "Memory not found."


async def test_another_account_sees_and_deletes_nothing(server: RunningServer) -> None:
    memory = await seed(server, "customer-1", "private", START)
    other = await create_account(store_of(server), name="Other")
    own = await seed(server, "customer-1", "theirs", START, account_id=other.record.account_id)
    assert (await server.call("GET", "/api/v1/memories", key=other.secret))[1] == [
        {"id": own.id, "externalUserId": "customer-1", "content": "theirs", "format": "Text"}]
    assert (await server.call("GET", f"/api/v1/memories/{memory.id}", key=other.secret))[0] == 404
    assert (await server.call("DELETE", f"/api/v1/memories?id={memory.id}", key=other.secret))[0] == 404
    status, body = await server.call("DELETE", "/api/v1/memories?externalUserId=customer-1&format=Text",
                                     key=other.secret)
    assert status == 200 and body["removedCount"] == 1
    assert (await server.call("GET", f"/api/v1/memories/{memory.id}"))[0] == 200


async def test_the_api_key_may_come_in_the_query(server: RunningServer) -> None:
    await seed(server, "customer-1", "via query", START)
    async with server.http.get(f"{server.url}/api/v1/memories?api-key={server.admin_key}") as response:
        assert response.status == 200 and len(await response.json()) == 1
    assert (await server.call("GET", "/api/v1/memories", key="sk-wrong"))[0] == 401
