"""Telegram through python-telegram-bot: we hold one `telegram.Bot` per token (never subclass it).

Inbound Updates arrive as JSON (webhook or getUpdates) and are translated here without PTB objects,
so `parse` stays pure; outbound calls go through the Bot, pointed at providers.telegram.api_url.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import telegram
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from botline.channels.base import (
    ChannelAdapter,
    DeliveryError,
    InboundMessage,
    ParsedWebhook,
    VoiceNote,
    WebhookRejected,
)
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import GroupPolicy, IntegrationType, TelegramIntegration
from botline.egress import Trust
from botline.engine.delivery import utf16_length
from botline.media import OutboundMedia

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
GROUP_TYPES = frozenset({"group", "supergroup"})
ALLOWED_UPDATES = ["message"]
POLL_TIMEOUT_SECONDS = 25
TELEGRAM_TEXT_LIMIT = 4096
MAX_BOTS = 256
"""Bot clients kept (each holds a connection pool); the least recently used is shut down past it."""


def bot_id_of(token: str) -> str:
    """A bot token starts with the bot's own user id: "123456:ABC..."."""
    return token.split(":", 1)[0]


class TelegramAdapter(ChannelAdapter[TelegramIntegration]):
    kind = IntegrationType.TELEGRAM
    max_text_length = TELEGRAM_TEXT_LIMIT
    max_image_bytes = 10 * 1024 * 1024
    """Bot API: photos up to 10 MB."""
    max_document_bytes = 50 * 1024 * 1024
    """Bot API: other files up to 50 MB."""
    can_register_webhook = True

    def __init__(self, api_url: str) -> None:
        self._api_url = api_url.rstrip("/")
        self._bots: OrderedDict[str, telegram.Bot] = OrderedDict()
        self._usernames: dict[str, str] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        """One lock per token being initialized: a slow getMe for one bot does not hold up the others."""
        self._retired: set[asyncio.Task[None]] = set()

    def text_length(self, text: str) -> int:
        return utf16_length(text)

    async def _bot(self, integration: TelegramIntegration) -> telegram.Bot:
        token = integration.bot_token
        bot = self._bots.get(token)
        if bot is not None:
            self._bots.move_to_end(token)
            return bot
        lock = self._starting.setdefault(token, asyncio.Lock())
        try:
            async with lock:
                if token not in self._bots:
                    bot = telegram.Bot(
                        token, base_url=f"{self._api_url}/bot", base_file_url=f"{self._api_url}/file/bot",
                        get_updates_request=HTTPXRequest(read_timeout=POLL_TIMEOUT_SECONDS + 10),
                    )
                    try:
                        await bot.initialize()  # getMe: checks the token and learns the username
                    except TelegramError as exc:
                        raise _delivery_error(exc) from None
                    self._usernames[token] = (bot.username or "").lower()
                    self._bots[token] = bot
                    self._retire_beyond_capacity()
                return self._bots[token]
        finally:
            if not lock.locked():
                self._starting.pop(token, None)

    def _retire_beyond_capacity(self) -> None:
        while len(self._bots) > MAX_BOTS:
            token, bot = self._bots.popitem(last=False)
            self._usernames.pop(token, None)
            task = asyncio.create_task(bot.shutdown(), name="telegram-bot-retire")
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    def verify(self, integration: TelegramIntegration, headers: Mapping[str, str], body: bytes) -> None:
        given = headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), integration.webhook_secret.encode()):
            raise WebhookRejected(401, "The Telegram secret token header is missing or wrong.")

    def parse(self, integration: TelegramIntegration, payload: Any) -> ParsedWebhook:
        message = payload.get("message") if isinstance(payload, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
            return ParsedWebhook(ignored=1)  # edits, channel posts, callbacks, service updates
        sender = message.get("from") or {}
        if sender.get("is_bot") or str(sender.get("id")) == bot_id_of(integration.bot_token):
            return ParsedWebhook(ignored=1)  # a bot never answers a bot, least of all itself
        chat = message["chat"]
        if chat.get("type") in GROUP_TYPES and not self._answers_group(integration, message):
            return ParsedWebhook(ignored=1)
        text = message.get("text") or message.get("caption") or ""
        media = _media_of(message)
        if not text and not media:
            return ParsedWebhook(ignored=1)
        name = " ".join(p for p in (sender.get("first_name"), sender.get("last_name")) if p) or sender.get("username")
        return ParsedWebhook(messages=[InboundMessage(
            provider_message_id=f"{chat['id']}:{message['message_id']}", chat_id=str(chat["id"]), text=text,
            sender_name=name, media=tuple(media),
        )])

    def _answers_group(self, integration: TelegramIntegration, message: dict[str, Any]) -> bool:
        if integration.group_policy is GroupPolicy.ALL:
            return True
        if integration.group_policy is GroupPolicy.IGNORE:
            return False
        replied = (message.get("reply_to_message") or {}).get("from") or {}
        if str(replied.get("id")) == bot_id_of(integration.bot_token):
            return True
        username = self._usernames.get(integration.bot_token, "")
        text = message.get("text") or message.get("caption") or ""
        for entity in message.get("entities") or message.get("caption_entities") or []:
            if entity.get("type") == "mention":
                mention = text.encode("utf-16-le")[entity["offset"] * 2:(entity["offset"] + entity["length"]) * 2]
                if username and mention.decode("utf-16-le").lower() == f"@{username}":
                    return True
        return False

    async def send_text(self, integration: TelegramIntegration, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        bot = await self._bot(integration)
        try:
            await bot.send_message(chat_id=chat_id, text=text)
        except TelegramError as exc:
            raise _delivery_error(exc) from None

    async def send_voice(self, integration: TelegramIntegration, chat_id: str, voice: VoiceNote, *,
                         trust: Trust = Trust.TENANT) -> None:
        """sendVoice for OGG/Opus (a voice note); anything else goes as sendAudio (a playable file)."""
        bot = await self._bot(integration)
        upload = telegram.InputFile(voice.data, filename=voice.filename)
        try:
            if voice.is_ogg:
                await bot.send_voice(chat_id=chat_id, voice=upload)
            else:
                await bot.send_audio(chat_id=chat_id, audio=upload)
        except TelegramError as exc:
            raise _delivery_error(exc) from None

    async def send_media(self, integration: TelegramIntegration, chat_id: str, media: OutboundMedia, *,
                         trust: Trust = Trust.TENANT) -> None:
        """sendPhoto for an image (Telegram shows it inline), sendDocument for any other file."""
        bot = await self._bot(integration)
        upload = telegram.InputFile(media.data, filename=media.filename)
        try:
            if media.is_image:
                await bot.send_photo(chat_id=chat_id, photo=upload)
            else:
                await bot.send_document(chat_id=chat_id, document=upload)
        except TelegramError as exc:
            raise _delivery_error(exc) from None

    async def typing(self, integration: TelegramIntegration, chat_id: str, *, trust: Trust = Trust.TENANT) -> None:
        bot = await self._bot(integration)
        try:
            await bot.send_chat_action(chat_id=chat_id, action="typing")
        except TelegramError as exc:
            raise _delivery_error(exc) from None

    async def fetch_media(self, integration: TelegramIntegration, media: MediaRef) -> bytes | None:
        if not media.file_id:
            return None
        bot = await self._bot(integration)
        try:
            file = await bot.get_file(media.file_id)
            return bytes(await file.download_as_bytearray())
        except TelegramError:
            return None

    async def register_webhook(self, integration: TelegramIntegration, url: str, *,
                               trust: Trust = Trust.TENANT) -> None:
        bot = await self._bot(integration)
        try:
            await bot.set_webhook(url=url, secret_token=integration.webhook_secret, allowed_updates=ALLOWED_UPDATES)
        except TelegramError as exc:
            raise _delivery_error(exc) from None

    async def fetch_updates(self, integration: TelegramIntegration, offset: int | None) -> list[dict[str, Any]]:
        bot = await self._bot(integration)
        try:
            updates = await bot.get_updates(
                offset=offset, timeout=POLL_TIMEOUT_SECONDS, allowed_updates=ALLOWED_UPDATES,
            )
        except Conflict:
            await bot.delete_webhook()  # polling replaces a webhook left from an earlier setup
            return []
        except TelegramError as exc:
            raise _delivery_error(exc) from None
        return [update.to_dict() for update in updates]

    async def close(self) -> None:
        bots, self._bots = list(self._bots.values()), OrderedDict()
        for bot in bots:
            await bot.shutdown()
        await asyncio.gather(*self._retired, return_exceptions=True)


def _delivery_error(exc: TelegramError) -> DeliveryError:
    """Never includes the token (InvalidToken's own message does)."""
    if isinstance(exc, RetryAfter):
        return DeliveryError("Telegram rate limit", retryable=True, retry_after=_seconds(exc.retry_after))
    if isinstance(exc, InvalidToken):
        return DeliveryError("Telegram rejected the bot token", retryable=False)
    if isinstance(exc, BadRequest | Forbidden):
        return DeliveryError(f"Telegram refused: {exc.message}", retryable=False)
    if isinstance(exc, NetworkError):
        return DeliveryError(f"Telegram unreachable: {type(exc).__name__}", retryable=True)
    return DeliveryError(f"Telegram error: {type(exc).__name__}", retryable=True)


def _seconds(value: Any) -> float:
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


def _media_of(message: dict[str, Any]) -> list[MediaRef]:
    media: list[MediaRef] = []
    if photos := message.get("photo"):
        largest = max(photos, key=lambda p: p.get("file_size") or p.get("width", 0))
        media.append(MediaRef(kind=MediaKind.IMAGE, file_id=largest["file_id"], mime_type="image/jpeg"))
    for key, kind in (("voice", MediaKind.AUDIO), ("audio", MediaKind.AUDIO), ("document", MediaKind.DOCUMENT)):
        if item := message.get(key):
            media.append(MediaRef(kind=kind, file_id=item["file_id"], mime_type=item.get("mime_type"),
                                  filename=item.get("file_name")))
    return media
