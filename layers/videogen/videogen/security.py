"""Tokens we hand out and later check: an HMAC under a versioned key, so keys can rotate.

Each use signs with its own purpose prefix (``callback:``, ``cursor:``), so a token made for
one use is never valid for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(key: str, message: str, purpose: str) -> str:
    digest = hmac.new(key.encode(), f"{purpose}:{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(message: str, keys: dict[str, str], *, purpose: str) -> str:
    """``<version>.<mac>`` of ``message`` under the active key."""
    version = keys["active"]
    return f"{version}.{_mac(keys[version], message, purpose)}"


def verify(message: str, token: str | None, keys: dict[str, str], *, purpose: str) -> bool:
    """True when ``token`` was made for ``message`` by any key still held (constant-time)."""
    if not token or "." not in token or len(token) > 200:
        return False
    version, _, mac = token.partition(".")
    key = keys.get(version) if version != "active" else None
    if key is None:
        # Compare anyway so a wrong version costs the same time as a wrong MAC.
        hmac.compare_digest(mac.encode(), _mac("unknown", message, purpose).encode())
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, message, purpose).encode())


def make_callback_token(job_id: str, keys: dict[str, str]) -> str:
    """Token for ``job_id``'s callback URL under the active key: ``<version>.<mac>``."""
    return sign(job_id, keys, purpose="callback")


def verify_callback_token(job_id: str, token: str | None, keys: dict[str, str]) -> bool:
    """True when ``token`` was made for ``job_id`` by any key still held (constant-time)."""
    return verify(job_id, token, keys, purpose="callback")
