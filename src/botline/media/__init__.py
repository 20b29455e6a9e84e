"""Media the bot sends: images and files produced during a turn, on their way to a channel."""

from botline.media.outbound import WHATSAPP_DOCUMENT_BYTES, WHATSAPP_IMAGE_BYTES, OutboundMedia, media_from_response

__all__ = ["WHATSAPP_DOCUMENT_BYTES", "WHATSAPP_IMAGE_BYTES", "OutboundMedia", "media_from_response"]
