"""Images and files a turn produced, sent after its text answer on a messaging channel.

The text has already gone out, so nothing here can lose it. A file the channel cannot take (too large
for the provider, a provider refusal, a channel without media sends) becomes a one-line notice naming
it, so the person knows something was meant to arrive.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from botline.channels.base import ChannelAdapter, DeliveryError
from botline.domain.integrations import Integration
from botline.egress import Trust
from botline.engine.delivery import with_retries
from botline.media import OutboundMedia

log = logging.getLogger(__name__)


def not_sent_notice(media: OutboundMedia) -> str:
    what = "image" if media.is_image else "file"
    return f"(The {what} {media.filename} could not be sent here.)"


async def send_media(adapter: ChannelAdapter[Any], integration: Integration, chat_id: str,
                     media: list[OutboundMedia], trust: Trust) -> list[str]:
    """Sends each file natively; returns the notices for those that could not go (to send as text)."""
    notices: list[str] = []
    for item in media:
        if len(item.data) > adapter.media_limit(item):
            log.info("%s of %d bytes too large for %s", item.content_type, len(item.data), adapter.kind.value)
            notices.append(not_sent_notice(item))
            continue
        try:
            await with_retries(adapter.kind.value, partial(adapter.send_media, integration, chat_id, item, trust=trust))
        except DeliveryError as exc:
            log.warning("%s to %s not delivered: %s", item.content_type, chat_id, exc.message)
            notices.append(not_sent_notice(item))
    return notices
