"""Callback tokens: an HMAC of the job id under a versioned key, so keys can rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(key: str, job_id: str) -> str:
    digest = hmac.new(key.encode(), f"callback:{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_callback_token(job_id: str, keys: dict[str, str]) -> str:
    """Token for ``job_id`` under the active key: ``<version>.<mac>``."""
    version = keys["active"]
    return f"{version}.{_mac(keys[version], job_id)}"


def verify_callback_token(job_id: str, token: str | None, keys: dict[str, str]) -> bool:
    """True when ``token`` was made for ``job_id`` by any key still held (constant-time)."""
    if not token or "." not in token or len(token) > 200:
        return False
    version, _, mac = token.partition(".")
    key = keys.get(version) if version != "active" else None
    if key is None:
        # Compare anyway so a wrong version costs the same time as a wrong MAC.
        hmac.compare_digest(mac.encode(), _mac("unknown", job_id).encode())
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, job_id).encode())
