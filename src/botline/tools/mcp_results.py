"""What an MCP tool's result becomes: text for the model, images for the model and the person.

- Text blocks, and embedded resources holding text, are the text the model reads (cut at a limit).
- An image block (base64 PNG, JPEG, GIF or WebP, its bytes checked against the type, at most
  `tools.mcp_image_max_bytes`) is shown to the model in the next round, when the gateway lets images
  reach it, and sent to the person with the answer, where a person sees the conversation. The block's
  `annotations.audience` narrows that: `["assistant"]` is for the model only, `["user"]` for the
  person only. The model's text names the image and says where it went.
- Audio, resource links, binary resources and any image that cannot be passed on become a one-line
  notice, so the model can say what it did not get instead of acting as if nothing came back.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import mcp_types as types
import orjson

from botline.gateway.tools import ToolReply
from botline.media.outbound import MAX_ATTACHMENTS, OutboundMedia, image_type, safe_filename

URI_SHOWN = 200
"""Characters of an embedded resource's URI put before its text."""


@dataclass(frozen=True)
class ResultRules:
    """How one turn reads MCP results."""

    text_limit: int
    """Characters of text the model reads from one result (more is cut with a notice)."""
    image_max_bytes: int
    model_sees_images: bool
    """The gateway's enabledMultimodalFeatures / DisableMultiModalInput let image parts reach the model."""
    person_sees_media: bool
    """The turn's channel shows files to a person (web chat, messaging channels)."""


@dataclass
class _Reading:
    parts: list[str]
    for_model: list[OutboundMedia]
    for_person: list[OutboundMedia]
    images: int = 0


def read_result(result: types.CallToolResult, tool: str, rules: ResultRules) -> str | ToolReply:
    reading = _Reading([], [], [])
    for block in result.content:
        if isinstance(block, types.TextContent):
            reading.parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.TextResourceContents):
            reading.parts.append(f"{str(block.resource.uri)[:URI_SHOWN]}:\n{block.resource.text}")
        elif isinstance(block, types.ImageContent):
            reading.parts.append(_image(block, tool, rules, reading))
        elif isinstance(block, types.AudioContent):
            reading.parts.append(f"[the tool returned {block.mime_type[:100]} audio, which is not passed on]")
        else:
            reading.parts.append(f"[the tool returned {block.type} content, which is not shown here]")
    if not reading.parts and result.structured_content is not None:
        reading.parts.append(orjson.dumps(result.structured_content).decode())
    text = "\n".join(reading.parts)
    if len(text) > rules.text_limit:
        text = text[:rules.text_limit] + f"\n[cut: the tool's output passed {rules.text_limit} characters]"
    if result.is_error:
        text = f"The tool reported an error: {text}"
    if reading.for_model or reading.for_person:
        return ToolReply(text, media=reading.for_person, images=reading.for_model)
    return text


def _image(block: types.ImageContent, tool: str, rules: ResultRules, reading: _Reading) -> str:
    """Passes the image on where it may go; returns the line the model reads about it."""
    claimed = block.mime_type[:100]
    if reading.images >= MAX_ATTACHMENTS:
        return f"[the tool returned another image ({claimed}); only {MAX_ATTACHMENTS} are passed on]"
    if len(block.data) * 3 // 4 > rules.image_max_bytes:
        return f"[the tool returned an image ({claimed}) larger than the {rules.image_max_bytes // 1024} KB passed on]"
    try:
        data = base64.b64decode(block.data, validate=True)
    except (binascii.Error, ValueError):
        return f"[the tool returned an image ({claimed}) that is not valid base64]"
    kind = image_type(data)
    if kind is None:
        return f"[the tool returned {claimed} image content, which is not a PNG, JPEG, GIF or WebP image]"
    audience = (block.annotations.audience if block.annotations is not None else None) or None
    reading.images += 1
    image = OutboundMedia(data=data, content_type=kind, filename=safe_filename("", kind, f"{tool}-{reading.images}"))
    told: list[str] = []
    if audience is None or "assistant" in audience:
        if rules.model_sees_images:
            reading.for_model.append(image)
            told.append("shown to you after the tool results")
        else:
            told.append("not shown to you: this assistant cannot see images")
    if audience is None or "user" in audience:
        if rules.person_sees_media:
            reading.for_person.append(image)
            told.append("sent to the user with your answer; do not repeat or link it")
        else:
            told.append("files cannot be shown in this conversation")
    return f"[image {image.filename} ({kind}, {max(len(data) // 1024, 1)} KB): {'; '.join(told)}]"
