"""The files of web-chat answers kept with the conversation: a tool's images and documents, and the
spoken audio, so a reloaded page shows the image, the download chip and the player again.

Kept in the Store (store/media.py) after the answer is stored, within `webchat.media_session_bytes`
per session; a file that does not fit is still shown live (as a `data:` URL in the `done` event) and
is missing after a reload. The page fetches kept files at `.../media/{id}` with its session's access
key (api/answer_files.py).
"""

from __future__ import annotations

import logging
from typing import Any

from botline.domain.answer_media import AnswerMedia, AnswerMediaKind
from botline.domain.clock import Clock
from botline.media import OutboundMedia
from botline.store.base import Store, StoreError
from botline.store.media import MediaAdded

log = logging.getLogger(__name__)

AUDIO_FILE_NAME = "answer"
AUDIO_EXTENSIONS = {"audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/wav": ".wav"}


def view(media: AnswerMedia) -> dict[str, Any]:
    """What the page needs to show a kept file; its bytes are at .../media/{id}."""
    return {"id": media.id, "kind": media.kind.value, "fileName": media.file_name, "contentType": media.content_type}


class AnswerFiles:
    def __init__(self, store: Store, clock: Clock, *, session_bytes: int) -> None:
        self._store = store
        self._clock = clock
        self._session_bytes = session_bytes

    async def keep(self, session_id: str, message_id: str, media: list[OutboundMedia]) -> list[dict[str, Any]]:
        """Keeps a turn's files with its (stored) answer; the `done` event's media: kept ones by id, the
        others inline as `data:` URLs."""
        views = []
        for item in media:
            if item.url is not None:  # a shell file's public address: the file stays in the user's files
                views.append(item.wire())
                continue
            kind = AnswerMediaKind.IMAGE if item.is_image else AnswerMediaKind.FILE
            kept = await self._add(session_id, message_id, kind, item.content_type, item.filename, item.data)
            views.append(item.wire() if kept is None else view(kept))
        return views

    async def keep_audio(self, session_id: str, message_id: str, data: bytes, content_type: str) -> None:
        """Keeps an answer's spoken audio, once (a second player finishing meanwhile keeps nothing more)."""
        if await self.audio(session_id, message_id) is None:
            name = AUDIO_FILE_NAME + AUDIO_EXTENSIONS.get(content_type, ".bin")
            await self._add(session_id, message_id, AnswerMediaKind.AUDIO, content_type, name, data)

    async def audio(self, session_id: str, message_id: str) -> tuple[AnswerMedia, bytes] | None:
        """The kept audio of an answer, if any."""
        found = next((m for m in await self._store.media.list(session_id)
                      if m.message_id == message_id and m.kind is AnswerMediaKind.AUDIO), None)
        return None if found is None else await self._store.media.get(session_id, found.id)

    async def by_message(self, session_id: str) -> dict[str, list[dict[str, Any]]]:
        """The kept images and files of the session's answers, per answer (audio has its own player)."""
        shown: dict[str, list[dict[str, Any]]] = {}
        for media in await self._store.media.list(session_id):
            if media.kind is not AnswerMediaKind.AUDIO:
                shown.setdefault(media.message_id, []).append(view(media))
        return shown

    async def _add(self, session_id: str, message_id: str, kind: AnswerMediaKind, content_type: str,
                   file_name: str, data: bytes) -> AnswerMedia | None:
        media = AnswerMedia(session_id=session_id, message_id=message_id, kind=kind, content_type=content_type,
                            file_name=file_name, size=len(data), created_at=self._clock.now())
        try:
            added = await self._store.media.add(media, data, session_bytes=self._session_bytes)
        except StoreError as exc:  # the answer is stored and shown; only a reload misses the file
            log.warning("answer file not kept: %s", exc)
            return None
        if added is not MediaAdded.STORED:
            log.info("answer file of %d bytes not kept for session %s: %s", len(data), session_id, added.value)
            return None
        return media
