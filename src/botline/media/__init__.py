"""Media the bot sends: images and files produced during a turn, on their way to a channel."""

from botline.media.outbound import OutboundMedia, media_from_response

__all__ = ["OutboundMedia", "media_from_response"]
