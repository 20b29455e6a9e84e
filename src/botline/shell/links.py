"""Public addresses of shell files: `{token}` = base64url(JSON claims) "." base64url(HMAC-SHA256).

The claims name the account, the shell user, the path and the expiry; the server keeps nothing, so an
address works on every replica sharing `shell.link_secret` and dies at its expiry. Tokens are compared
in constant time; a token longer than TOKEN_MAX is refused before any decoding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import orjson

TOKEN_MAX = 4096
PUBLIC_PREFIX = "/api/v1/public/ext-res/file/"
"""Where a token is served (api/shell.py): `{server.public_url}{PUBLIC_PREFIX}{token}`."""


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkClaims:
    account_id: str
    shell_user_id: str
    path: str
    expires: int
    """Unix seconds."""


def new_secret() -> str:
    """A fresh signing key (kept in the Store when `shell.link_secret` is unset)."""
    return secrets.token_urlsafe(32)


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._key = secret

    def sign(self, claims: LinkClaims) -> str:
        payload = _encode(orjson.dumps([claims.account_id, claims.shell_user_id, claims.path, claims.expires]))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, now: datetime) -> LinkClaims | None:
        """The claims of a genuine, unexpired token; None for anything else."""
        if len(token) > TOKEN_MAX or not token.isascii() or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            account_id, user, path, expires = orjson.loads(_decode(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, int) or expires <= now.timestamp():
            return None
        return LinkClaims(str(account_id), str(user), str(path), expires)

    def _mac(self, payload: str) -> str:
        return _encode(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())
