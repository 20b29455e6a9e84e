"""The Telegram Bot API emulator, driven through python-telegram-bot's real ``Bot`` and ``Application``."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, InputFile, Message, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from tests.emulators.audio import mp3, ogg_opus
from tests.emulators.telegram import TelegramEmulator
from tests.support.images import png

TOKEN = "123456789:AAEmulatorTestTokenForBotline000000"
SECRET = "s3cret_-Token"
CHAT = 4242
GROUP = -1001234567890


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator(TOKEN, time_scale=0.01) as emulator:
        yield emulator


def make_bot(emu: TelegramEmulator, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=emu.base_url, base_file_url=emu.base_file_url)


@pytest.fixture
async def bot(emu: TelegramEmulator) -> AsyncIterator[Bot]:
    async with make_bot(emu) as client:  # initialize() calls getMe
        yield client


@dataclass
class Receiver:
    """A webhook endpoint that answers with scripted statuses and records what it got."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{site.port}/hook"
    yield hook
    await runner.cleanup()


# ------------------------------------------------------------------ basics


async def test_get_me(emu: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456789
    assert me.is_bot
    assert me.username == "botline_test_bot"
    assert bot.username == "botline_test_bot"
    assert [call.method for call in emu.calls] == ["getMe", "getMe"]
    assert emu.calls[0].status == 200


async def test_wrong_token_and_unknown_method(emu: TelegramEmulator, bot: Bot) -> None:
    for token, description in (("987654321:WrongToken", "Unauthorized"), ("garbage", "Not Found")):
        other = make_bot(emu, token)  # "garbage" is not even shaped like a token
        try:
            with pytest.raises(InvalidToken, match="was rejected by the server") as caught:
                await other.initialize()  # (a Bot never initialized would not close its HTTP client)
            assert str(caught.value.__cause__) == description
        finally:
            await other.shutdown()
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": CHAT})


async def test_send_message(emu: TelegramEmulator, bot: Bot) -> None:
    first = await bot.send_message(CHAT, "hello there")
    second = await bot.send_message(CHAT, "again", reply_to_message_id=first.message_id)
    assert isinstance(first, Message)
    assert first.text == "hello there"
    assert first.chat.id == CHAT
    assert first.chat.type == "private"
    assert first.from_user is not None and first.from_user.id == 123456789 and first.from_user.is_bot
    assert isinstance(first.date, dtm.datetime)
    assert second.message_id == first.message_id + 1
    assert second.reply_to_message is not None and second.reply_to_message.message_id == first.message_id
    sent = emu.sent_messages(CHAT)
    assert [(m["chat_id"], m["text"]) for m in sent] == [(CHAT, "hello there"), (CHAT, "again")]
    # PTB 22 sends reply_to_message_id as reply_parameters (a JSON string in the form body, decoded here)
    assert sent[1]["reply_parameters"]["message_id"] == first.message_id
    assert "reply_to_message_id" not in sent[1]
    assert emu.calls_to("sendMessage")[0].content_type == "application/x-www-form-urlencoded"
    assert emu.sent_messages(CHAT + 1) == []


async def test_send_message_limits(emu: TelegramEmulator, bot: Bot) -> None:
    await bot.send_message(CHAT, "x" * 4096)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "😀" * 2049)  # 2049 characters, 4098 UTF-16 units
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(CHAT, "   ")
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(CHAT, "hi", reply_to_message_id=999)
    assert len(emu.sent_messages()) == 1
    assert [call.status for call in emu.calls_to("sendMessage")] == [200, 400, 400, 400, 400]


async def test_parse_modes(emu: TelegramEmulator, bot: Bot) -> None:
    bold = await bot.send_message(CHAT, "*bold* and \\.done", parse_mode=ParseMode.MARKDOWN_V2)
    assert bold.text == "bold and .done"
    assert [(e.type, e.offset, e.length) for e in bold.entities] == [("bold", 0, 4)]
    with pytest.raises(BadRequest, match=r"Can't parse entities: character '\.' is reserved"):
        await bot.send_message(CHAT, "Version 1.0", parse_mode=ParseMode.MARKDOWN_V2)
    markup = await bot.send_message(CHAT, "<b>hi</b> &amp; <a href='https://x.io'>link</a>", parse_mode="HTML")
    assert markup.text == "hi & link"
    assert [(e.type, e.offset, e.length) for e in markup.entities] == [("bold", 0, 2), ("text_link", 5, 4)]
    with pytest.raises(BadRequest, match='unsupported start tag "br" at byte offset 1'):
        await bot.send_message(CHAT, "a<br>b", parse_mode="HTML")
    # entity parsing happens before the length check
    await bot.send_message(CHAT, "<b>" + "y" * 4096 + "</b>", parse_mode="HTML")


async def test_json_multipart_and_get_bodies(emu: TelegramEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.api_url}/sendMessage", json={"chat_id": str(CHAT), "text": "json"}) as r:
            assert (await r.json())["result"]["text"] == "json"
        form = aiohttp.FormData({"chat_id": str(CHAT), "text": "multipart"})
        form.add_field("document", b"abc", filename="a.txt")  # forces multipart/form-data
        async with http.post(f"{emu.api_url}/sendMessage", data=form) as r:
            assert (await r.json())["result"]["text"] == "multipart"
        async with http.get(f"{emu.api_url}/sendmessage", params={"chat_id": CHAT, "text": "get"}) as r:
            assert r.status == 200
        async with http.post(f"{emu.api_url}/sendMessage", json={"chat_id": CHAT}) as r:
            assert r.status == 400
            assert await r.json() == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }
    assert [m["text"] for m in emu.sent_messages(CHAT)] == ["json", "multipart", "get"]
    assert [c.content_type for c in emu.calls[:2]] == ["application/json", "multipart/form-data"]
    assert emu.calls[1].params["document"] == {
        "filename": "a.txt",
        "content_type": "application/octet-stream",
        "size": 3,
        "data": b"abc",
    }


async def test_send_chat_action(emu: TelegramEmulator, bot: Bot) -> None:
    assert await bot.send_chat_action(CHAT, ChatAction.TYPING) is True
    with pytest.raises(BadRequest, match="Wrong parameter action in request"):
        await bot.send_chat_action(CHAT, "dancing")
    assert [(a["chat_id"], a["action"]) for a in emu.chat_actions()] == [(CHAT, "typing")]
    emu.block(CHAT)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_chat_action(CHAT, ChatAction.TYPING)


# ------------------------------------------------------------------ updates


async def test_webhook_blocks_get_updates(emu: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Secret token contains unallowed characters"):
        await bot.set_webhook("https://example.com/hook", secret_token="a+b=")
    with pytest.raises(BadRequest, match="Secret token is too long"):
        await bot.set_webhook("https://example.com/hook", secret_token="a" * 257)
    assert emu.webhook is None
    assert await bot.set_webhook("https://example.com/hook", secret_token=SECRET, allowed_updates=["message"])
    assert emu.webhook is not None and emu.webhook.secret_token == SECRET
    info = await bot.get_webhook_info()
    assert info.url == "https://example.com/hook"
    assert info.allowed_updates == ("message",)
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_get_updates_confirms_with_offset(emu: TelegramEmulator, bot: Bot) -> None:
    assert await bot.delete_webhook()
    first = emu.text_update(CHAT, "/start", first_name="Ana", username="ana")
    group = emu.text_update(-1001234567890, "@botline_test_bot hi", chat_type="supergroup", title="Equipe", user_id=7)
    emu.queue_update(first)
    emu.queue_update(group)
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [first["update_id"], group["update_id"]]
    assert group["update_id"] == first["update_id"] + 1
    start = updates[0].message
    assert start is not None and start.text == "/start" and start.chat.type == "private"
    assert start.from_user is not None and start.from_user.username == "ana"
    assert [(e.type, e.offset, e.length) for e in start.entities] == [("bot_command", 0, 6)]
    mention = updates[1].message
    assert mention is not None and mention.chat.type == "supergroup" and mention.chat.title == "Equipe"
    assert mention.entities[0].type == "mention" and mention.from_user is not None and mention.from_user.id == 7
    # not confirmed yet: the same updates again
    assert len(await bot.get_updates()) == 2
    assert await bot.get_updates(offset=updates[-1].update_id + 1) == ()
    assert emu.pending_update_count == 0
    assert await bot.get_updates() == ()


async def test_long_poll_returns_when_an_update_arrives(emu: TelegramEmulator, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await bot.get_updates(timeout=1) == ()  # held for the whole timeout
    assert loop.time() - began >= 0.9
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await emu.wait_for_calls("getUpdates", 2)
    await asyncio.sleep(0.05)
    began = loop.time()
    emu.queue_update(emu.text_update(CHAT, "wake up"))
    updates = await asyncio.wait_for(poll, 2)
    assert loop.time() - began < 0.5
    assert updates[0].message is not None and updates[0].message.text == "wake up"


async def test_poll_conflicts(emu: TelegramEmulator, bot: Bot) -> None:
    async with make_bot(emu) as second:
        held = asyncio.create_task(bot.get_updates(timeout=5))
        await emu.wait_for_calls("getUpdates")
        assert await second.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await held
        held = asyncio.create_task(bot.get_updates(timeout=5))
        await emu.wait_for_calls("getUpdates", 3)
        await second.set_webhook("https://example.com/hook")
        with pytest.raises(Conflict, match="terminated by setWebhook request"):
            await held


async def test_get_file_and_download(emu: TelegramEmulator, bot: Bot) -> None:
    voice = emu.voice_update(CHAT, b"OggS-voice-bytes", duration=4)
    photo = emu.photo_update(CHAT, b"jpeg-bytes", caption="nota fiscal")
    document = emu.document_update(CHAT, b"%PDF-contract", file_name="contrato.pdf")
    file = await bot.get_file(voice["message"]["voice"]["file_id"])
    assert file.file_path is not None and file.file_path.startswith(f"{emu.base_file_url}{TOKEN}/voice/")
    assert file.file_size == len(b"OggS-voice-bytes")
    buffer = io.BytesIO()
    await file.download_to_memory(buffer)
    assert buffer.getvalue() == b"OggS-voice-bytes"
    # the shapes parse as PTB objects whose helpers download the registered bytes
    photo_message = Update.de_json(photo, bot).message
    assert photo_message is not None and photo_message.caption == "nota fiscal"
    assert bytes(await (await photo_message.photo[-1].get_file()).download_as_bytearray()) == b"jpeg-bytes"
    document_message = Update.de_json(document, bot).message
    assert document_message is not None and document_message.document is not None
    assert document_message.document.file_name == "contrato.pdf"
    assert bytes(await (await document_message.document.get_file()).download_as_bytearray()) == b"%PDF-contract"
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("nope")


async def test_failure_injection(emu: TelegramEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage", 429, retry_after=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB 22 deprecates the int form of RetryAfter.retry_after
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(CHAT, "flood")
        assert caught.value.retry_after == 7
    emu.fail_next("sendMessage", 500)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(CHAT, "boom")
    emu.fail_next("sendChatAction", 502, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_chat_action(CHAT, ChatAction.TYPING)
    await bot.send_message(CHAT, "fine now")
    assert [m["text"] for m in emu.sent_messages()] == ["fine now"]
    assert [c.status for c in emu.calls if c.method != "getMe"] == [429, 500, 502, 502, 200]


# ------------------------------------------------------------------ webhook pusher


async def test_webhook_push_with_secret_and_retries(emu: TelegramEmulator, bot: Bot, receiver: Receiver) -> None:
    assert await bot.set_webhook(receiver.url, secret_token=SECRET)
    update = emu.text_update(CHAT, "olá")
    assert await emu.push(update) == 200
    receiver.statuses = [500, 503]
    assert await emu.push_with_retries(update, retry_delays=[0, 0.01]) == 200
    assert [d.status for d in emu.deliveries] == [200, 500, 503, 200]
    assert [d.attempt for d in emu.deliveries] == [1, 1, 2, 3]
    for headers, body in receiver.requests:
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
        assert headers["Content-Type"] == "application/json"
        parsed = Update.de_json(json.loads(body), bot)
        assert parsed.update_id == update["update_id"]
        assert parsed.message is not None and parsed.message.text == "olá"
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 503 Service Unavailable"
    assert info.pending_update_count == 0


async def test_push_with_retries_gives_up_and_deliver(emu: TelegramEmulator, bot: Bot, receiver: Receiver) -> None:
    await bot.set_webhook(receiver.url)
    receiver.statuses = [403, 403, 403]
    assert await emu.push_with_retries(emu.text_update(CHAT, "nope"), retry_delays=[0, 0]) == 403
    assert "X-Telegram-Bot-Api-Secret-Token" not in receiver.requests[0][0]
    assert await emu.deliver(emu.text_update(CHAT, "via deliver")) == 200
    await bot.delete_webhook()
    assert await emu.deliver(emu.text_update(CHAT, "queued")) is None
    assert [u.message.text for u in await bot.get_updates() if u.message] == ["queued"]


# ------------------------------------------------------------------ a whole PTB Application


async def test_application_polling_echo(emu: TelegramEmulator) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_chat is not None
        await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    app = Application.builder().token(TOKEN).base_url(emu.base_url).base_file_url(emu.base_file_url).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=1))
        update = emu.text_update(GROUP, "ping", chat_type="supergroup", title="Equipe")
        emu.queue_update(update)
        sent = await emu.wait_for_messages(1, timeout=5)
        await app.updater.stop()
        await app.stop()
    assert sent[0]["text"] == "echo: ping"
    # PTB 22's reply_text quotes the message in groups (not in private chats)
    assert sent[0]["message"]["reply_to_message"]["message_id"] == update["message"]["message_id"]
    assert sent[0]["message"]["chat"] == {"id": GROUP, "type": "supergroup", "title": "Equipe"}
    assert emu.chat_actions(GROUP)[0]["action"] == "typing"
    assert emu.pending_update_count == 0  # confirmed by the final getUpdates on stop
    assert emu.calls_to("deleteWebhook")


async def test_bot_api_json_shape(emu: TelegramEmulator) -> None:
    """The raw envelope and Message shape, as Telegram answers them."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.api_url}/sendMessage", data={"chat_id": CHAT, "text": "hi"}) as r:
            body: dict[str, Any] = await r.json()
        async with http.post(f"{emu.url}/bot123:bad/getMe") as r:
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        emu.fail_next("getMe", 429, retry_after=3)
        async with http.get(f"{emu.api_url}/getMe") as r:
            assert r.status == 429
            assert await r.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            }
    assert body["ok"] is True
    assert set(body["result"]) == {"message_id", "from", "chat", "date", "text"}
    assert body["result"]["from"]["is_bot"] is True


async def test_send_voice_makes_a_voice_message_from_ogg_and_audio_otherwise(
    emu: TelegramEmulator, bot: Bot
) -> None:
    voice = await bot.send_voice(chat_id=CHAT, voice=ogg_opus(0.2))
    assert voice.voice is not None and voice.voice.mime_type == "audio/ogg"
    audio = await bot.send_voice(chat_id=CHAT, voice=mp3(0.2))
    assert audio.voice is None and audio.audio is not None
    with pytest.raises(BadRequest, match="no voice in the request"):
        await bot.send_voice(chat_id=CHAT, voice="")


async def test_send_photo_and_send_document_make_photo_and_document_messages(
    emu: TelegramEmulator, bot: Bot
) -> None:
    photo = await bot.send_photo(chat_id=CHAT, photo=InputFile(png(20, 10), filename="chart.png"))
    assert [(size.width, size.height) for size in photo.photo] == [(20, 10)]
    document = await bot.send_document(chat_id=CHAT, document=InputFile(b"%PDF-1.4", filename="report.pdf"))
    assert document.document is not None and document.document.file_name == "report.pdf"
    assert document.document.mime_type == "application/pdf"
    with pytest.raises(BadRequest, match="Image_process_failed"):  # PTB capitalises the description
        await bot.send_photo(chat_id=CHAT, photo=InputFile(b"not an image", filename="x.png"))
    with pytest.raises(NetworkError, match="Request Entity Too Large"):  # how PTB reports a 413
        await bot.send_photo(chat_id=CHAT, photo=InputFile(png(1, 1) + b"\0" * (10 * 1024 * 1024), filename="big.png"))
    assert [call.method for call in emu.calls if call.status == 200][-2:] == ["sendPhoto", "sendDocument"]
