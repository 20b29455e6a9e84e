"""One exception root for the gateway pipeline, carrying what the HTTP boundary needs."""

from __future__ import annotations


class GatewayError(Exception):
    """A turn could not be completed. `message` is safe to show to the end user."""

    status_code: int = 502

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after
        """Seconds the caller should wait before trying again (a `Retry-After` header), when known."""


class UpstreamError(GatewayError):
    """The model provider failed (after retries) or refused the request."""

    def __init__(
        self, message: str, *, status_code: int = 502, upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)
        self.upstream_status = upstream_status


class ContextTooLarge(GatewayError):
    """The conversation does not fit contextMaximumSize (Throw, or even the last message alone)."""

    status_code = 400


class NoModelConfigured(GatewayError):
    """No gateway/model is configured for this conversation."""

    status_code = 422

    def __init__(self) -> None:
        super().__init__(
            "No AI model is configured for this assistant yet: create an AI gateway and assign it."
        )


class SourceUnavailable(GatewayError):
    """A protocol function source could not be loaded, so the turn cannot offer its tools."""

    status_code = 502
