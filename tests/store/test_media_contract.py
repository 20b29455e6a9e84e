"""The Store contract for bytes: answer files live and die with their session and answer, within a
per-session budget; shared blobs are found until their TTL. Every backend passes every test here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botline.domain.answer_media import AnswerMedia, AnswerMediaKind
from botline.domain.conversations import Message, Role, Session
from botline.store import Store
from botline.store.base import SessionChange
from botline.store.media import Blob, MediaAdded

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
ALICE = "account-alice"
BUDGET = 1000
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def chat(store: Store, access_key: str = "ak-1", *, client_id: str = "client-1") -> Session:
    session = Session(account_id=ALICE, chat_client_id=client_id, access_key=access_key, created_at=T0,
                      expires_at=T0 + timedelta(days=1))
    await store.sessions.create(session)
    return session


async def answer(store: Store, session: Session, text: str = "Here it is.") -> Message:
    question = Message(session_id=session.id, role=Role.USER, content="a chart please", created_at=T0)
    reply = Message(session_id=session.id, role=Role.ASSISTANT, content=text, created_at=T0)
    assert await store.sessions.add_messages(ALICE, session.id, [question, reply], SessionChange(messages=2))
    return reply


def file_of(reply: Message, data: bytes, *, kind: AnswerMediaKind = AnswerMediaKind.IMAGE,
            name: str = "chart.png") -> AnswerMedia:
    types = {AnswerMediaKind.IMAGE: "image/png", AnswerMediaKind.AUDIO: "audio/mpeg"}
    content_type = types.get(kind, "application/pdf")
    return AnswerMedia(session_id=reply.session_id, message_id=reply.id, kind=kind, content_type=content_type,
                       file_name=name, size=len(data), created_at=T0)


async def add(store: Store, media: AnswerMedia, data: bytes) -> MediaAdded:
    return await store.media.add(media, data, session_bytes=BUDGET)


async def test_a_file_is_read_back_whole_in_its_session_only(store: Store) -> None:
    mine, theirs = await chat(store), await chat(store, "ak-2")
    reply = await answer(store, mine)
    image, report = file_of(reply, PNG), file_of(reply, b"%PDF-1.4", kind=AnswerMediaKind.FILE, name="r.pdf")
    assert await add(store, image, PNG) is MediaAdded.STORED
    assert await add(store, report, b"%PDF-1.4") is MediaAdded.STORED
    assert await store.media.get(mine.id, image.id) == (image, PNG)
    assert [m.id for m in await store.media.list(mine.id)] == [image.id, report.id]  # the order they came in
    assert await store.media.get(theirs.id, image.id) is None  # another session's id finds nothing
    assert await store.media.list(theirs.id) == []


async def test_a_file_needs_its_answer_in_that_session(store: Store) -> None:
    mine, theirs = await chat(store), await chat(store, "ak-2")
    reply = await answer(store, mine)
    astray = file_of(reply, PNG).model_copy(update={"session_id": theirs.id})
    assert await add(store, astray, PNG) is MediaAdded.NO_MESSAGE
    gone = file_of(reply, PNG).model_copy(update={"message_id": "no-such-message"})
    assert await add(store, gone, PNG) is MediaAdded.NO_MESSAGE
    assert await store.media.list(theirs.id) == [] and await store.media.list(mine.id) == []


async def test_the_session_budget_refuses_a_file_that_would_pass_it(store: Store) -> None:
    session = await chat(store)
    reply = await answer(store, session)
    assert await add(store, file_of(reply, b"a" * 600), b"a" * 600) is MediaAdded.STORED
    assert await add(store, file_of(reply, b"b" * 600), b"b" * 600) is MediaAdded.FULL
    assert await add(store, file_of(reply, b"c" * 400), b"c" * 400) is MediaAdded.STORED  # exactly the budget
    assert [m.size for m in await store.media.list(session.id)] == [600, 400]


async def test_deleting_the_session_deletes_its_files(store: Store) -> None:
    session, kept = await chat(store), await chat(store, "ak-2")
    doomed, other = file_of(await answer(store, session), PNG), file_of(await answer(store, kept), PNG)
    await add(store, doomed, PNG)
    await add(store, other, PNG)
    assert await store.sessions.delete(ALICE, session.id)
    assert await store.media.get(session.id, doomed.id) is None and await store.media.list(session.id) == []
    assert await store.media.get(kept.id, other.id) == (other, PNG)


async def test_expired_and_client_sessions_take_their_files_with_them(store: Store) -> None:
    expired, of_client = await chat(store), await chat(store, "ak-2", client_id="client-2")
    await store.sessions.renew(ALICE, expired.id, expires_at=T0)
    for session in (expired, of_client):
        await add(store, file_of(await answer(store, session), PNG), PNG)
    assert await store.sessions.delete_expired(T0 + timedelta(seconds=1)) == 1
    assert await store.sessions.delete_for_client(ALICE, "client-2") == 1
    assert await store.media.list(expired.id) == [] and await store.media.list(of_client.id) == []


async def test_a_retry_drops_the_files_of_the_answers_it_drops_and_a_reset_drops_all(store: Store) -> None:
    session = await chat(store)
    first = await answer(store, session, "first")
    second = await answer(store, session, "second")
    kept, dropped = file_of(first, PNG), file_of(second, PNG, kind=AnswerMediaKind.AUDIO, name="answer.mp3")
    await add(store, kept, PNG)
    await add(store, dropped, PNG)
    messages = await store.messages.list(session.id)
    last_question = messages[2]
    assert await store.messages.delete_after(session.id, last_question.id) == 1
    assert [m.id for m in await store.media.list(session.id)] == [kept.id]
    assert await store.media.get(session.id, dropped.id) is None
    assert await add(store, dropped, PNG) is MediaAdded.NO_MESSAGE  # its answer is gone: nothing comes back
    await store.messages.clear(session.id)
    assert await store.media.list(session.id) == [] and await store.media.get(session.id, kept.id) is None


async def test_a_shared_blob_is_found_until_its_ttl(store: Store) -> None:
    blob = Blob(content_type="audio/mpeg", data=b"ID3" + bytes(range(256)))
    await store.blobs.put("k1", blob, now=T0, ttl_seconds=60)
    assert await store.blobs.get("k1", now=T0 + timedelta(seconds=59)) == blob
    assert await store.blobs.get("k1", now=T0 + timedelta(seconds=60)) is None
    assert await store.blobs.get("k2", now=T0) is None
    await store.blobs.put("k1", Blob("audio/ogg", b"OggS"), now=T0, ttl_seconds=60)  # replaced
    assert await store.blobs.get("k1", now=T0) == Blob("audio/ogg", b"OggS")


async def test_purge_keeps_live_blobs(store: Store) -> None:
    """SQLite deletes expired rows here; Redis expires each key at its TTL and purges nothing."""
    await store.blobs.put("old", Blob("audio/mpeg", b"a"), now=T0, ttl_seconds=1)
    await store.blobs.put("new", Blob("audio/mpeg", b"b"), now=T0, ttl_seconds=3600)
    assert await store.blobs.purge(T0 + timedelta(seconds=2)) in (0, 1)
    assert await store.blobs.get("old", now=T0 + timedelta(seconds=2)) is None
    assert await store.blobs.get("new", now=T0 + timedelta(seconds=2)) == Blob("audio/mpeg", b"b")
