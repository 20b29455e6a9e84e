"""Files the bot produced for an answer (a tool's image or document, the spoken audio), kept with the
conversation so a reloaded chat page shows them again. The bytes live apart from this record."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow


class AnswerMediaKind(StrEnum):
    IMAGE = "image"
    """Drawn inline (a raster type every browser decodes safely)."""
    FILE = "file"
    """A download chip."""
    AUDIO = "audio"
    """The answer's spoken version, under its player."""


class AnswerMedia(CamelModel):
    id: str = Field(default_factory=new_id)
    """Random (UUID v4): part of the file's URL, which also needs the session's access key."""
    session_id: str
    message_id: str
    """The answer it belongs to: removed with it (retry, reset) and with its session."""
    kind: AnswerMediaKind
    content_type: str
    file_name: str
    size: int
    created_at: datetime = Field(default_factory=utcnow)
