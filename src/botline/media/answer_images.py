"""Markdown images in an answer, on hosts the chat client allows, fetched to be sent as files.

The web chat never loads images from other hosts (an image URL the model was steered into writing
would leak the conversation), and channels only send text. A client that names hosts it trusts
(`imageHosts`, none by default) gets those images fetched by botline, with the gateway owner's egress
trust and the tool-media cap, and sent like a tool's image. Other links are left as written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from urllib.parse import urlsplit

from botline.egress import Egress, EgressError, Trust
from botline.media.outbound import OutboundMedia, media_type, safe_filename

log = logging.getLogger(__name__)

IMAGE_LINK = re.compile(r"!\[([^\]\n]{0,200})\]\((https?://[^\s()]{1,2000})\)")
"""`![alt](https://…)` (or http): bounded negated classes, so matching stays linear in the answer's length."""
MAX_IMAGES = 4
"""Images fetched per answer; an answer listing more gets the first ones."""
FETCH_TIMEOUT_SECONDS = 15.0
ANSWER_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def allowed_links(text: str, hosts: Collection[str]) -> list[tuple[str, str]]:
    """(alt, url) of the answer's images on an allowed host, first MAX_IMAGES, each URL once."""
    found: list[tuple[str, str]] = []
    for match in IMAGE_LINK.finditer(text):
        alt, url = match.group(1), match.group(2)
        host = (urlsplit(url).hostname or "").lower()
        if host in hosts and url not in (u for _, u in found):
            found.append((alt, url))
            if len(found) == MAX_IMAGES:
                break
    return found


async def fetch_answer_images(text: str, hosts: Collection[str], egress: Egress, *, trust: Trust,
                              max_bytes: int) -> list[OutboundMedia]:
    """The allowed images of `text` that could be fetched and are images; failures are logged, skipped."""
    if not hosts or "![" not in text:
        return []
    media: list[OutboundMedia] = []
    for alt, url in allowed_links(text, hosts):
        try:
            response = await egress.request("GET", url, trust=trust, max_bytes=max_bytes,
                                            timeout=FETCH_TIMEOUT_SECONDS)
        except EgressError as exc:
            log.warning("answer image not fetched: %s", exc.message)
            continue
        content_type = media_type(response.headers.get("Content-Type", ""))
        if not response.ok or content_type not in ANSWER_IMAGE_TYPES or not response.body:
            log.warning("answer image not used: HTTP %s, %s", response.status, content_type or "no type")
            continue
        name = urlsplit(url).path.rsplit("/", 1)[-1] or alt
        media.append(OutboundMedia(data=response.body, content_type=content_type,
                                   filename=safe_filename(name, content_type, alt or "image")))
    return media
