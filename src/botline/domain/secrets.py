"""Masked secrets, and the rule that a stored secret never follows a new destination.

Answers show secrets as MASK; an edit that sends MASK back (or leaves the secret out) keeps the stored
value. That is only safe while the secret still goes where it went before: an edit that changes the
URL a secret is sent to must carry the secret again, or any key holder could point the stored secret
at a server of their own and read it there.
"""

from __future__ import annotations

MASK = "********"


class SecretNeeded(ValueError):
    """An edit moved a masked secret to a new destination; `field` is the secret's wire path."""

    def __init__(self, field: str, destination: str) -> None:
        super().__init__(
            f"Invalid value for {field}: send it again when {destination} changes "
            "(a stored secret never follows a new address)."
        )
        self.field = field


def same_destination(before: object, after: object) -> bool:
    """True when two URLs name the same destination (trailing slashes and case of scheme/host aside)."""
    if not isinstance(before, str) or not isinstance(after, str):
        return before == after
    return _normal(before) == _normal(after)


def _normal(url: str) -> str:
    scheme, sep, rest = url.strip().rstrip("/").partition("://")
    if not sep:
        return url.strip().rstrip("/")
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{slash}{path}"
