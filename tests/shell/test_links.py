"""Public-address tokens: only a genuine, unexpired token opens a file; anything else is None, never an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botline.shell.links import LinkClaims, LinkSigner

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
CLAIMS = LinkClaims("account", "user", "a/b.txt", int((NOW + timedelta(hours=1)).timestamp()))


def test_a_signed_token_opens_until_its_expiry() -> None:
    signer = LinkSigner(b"secret")
    token = signer.sign(CLAIMS)
    assert signer.verify(token, NOW) == CLAIMS
    assert signer.verify(token, NOW + timedelta(hours=1)) is None


def test_forged_foreign_and_malformed_tokens_open_nothing() -> None:
    signer = LinkSigner(b"secret")
    token = signer.sign(CLAIMS)
    payload, mac = token.split(".")
    other = LinkSigner(b"other").sign(LinkClaims("account", "user", "../../etc/passwd", CLAIMS.expires))
    for bad in (other, f"{payload}.{mac[:-1]}A", f"{payload}x.{mac}", "", ".", "a.b.c", "é.ü", "x" * 5000,
                f"{other.split('.')[0]}.{mac}"):
        assert signer.verify(bad, NOW) is None, bad

