"""HMAC-SHA256 request signatures of the leaderboard API (lower-case hex of the exact body bytes)."""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def sign(body: bytes, secret: str) -> str:
    """The Authorization value for `body`: lower-case hex HMAC-SHA256 under `secret`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, header: str | None, secret: str) -> bool:
    """Whether `header` is the signature of `body` (constant-time; a non-hex header never matches)."""
    if not secret or header is None or not _HEX_SHA256.match(header.strip()):
        return False
    return hmac.compare_digest(sign(body, secret), header.strip().lower())
