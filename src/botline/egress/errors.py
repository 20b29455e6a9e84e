"""What an outbound call can fail with. Every message is safe to log and to show a tenant: it names
the kind of failure, never the URL (which may carry a token in its path or query) nor the address."""

from __future__ import annotations

import errno


class EgressError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DestinationRefused(EgressError, OSError):
    """The destination is not allowed for this caller (security.egress). An OSError too, so that it
    travels through aiohttp's connector (which wraps resolver failures) and stays recognisable."""

    def __init__(self, message: str = "the destination is not allowed by this server's egress policy") -> None:
        EgressError.__init__(self, message)
        self.errno = errno.EACCES


class ResponseTooLarge(EgressError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the response is larger than {limit} bytes")
        self.limit = limit


class EgressFailed(EgressError):
    """The request could not be completed: connection, timeout, too many redirects, bad URL."""


def refusal_in(exc: BaseException | None) -> DestinationRefused | None:
    """The DestinationRefused somewhere in an exception's cause chain (SDKs and aiohttp wrap it)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DestinationRefused):
            return exc
        inner = getattr(exc, "os_error", None)
        if isinstance(inner, DestinationRefused):
            return inner
        exc = exc.__cause__ or exc.__context__
    return None
