"""Secrets: provider API keys and versioned signing keys, read and cached by Powertools.

Powertools' parameters utility is imported on the first secret read, not at import: it
pulls every parameter provider (SSM, AppConfig, DynamoDB) and costs tens of milliseconds
of cold start in functions that may never read a secret.
"""

from __future__ import annotations

import json
from typing import Any

from .models import Route
from .settings import Settings, key_secret_for


def _get_secret(name: str, settings: Settings, *, as_json: bool = False) -> Any:
    from aws_lambda_powertools.utilities import parameters

    if as_json:
        return parameters.get_secret(name, max_age=settings.secrets_max_age_seconds, transform="json")
    value = parameters.get_secret(name, max_age=settings.secrets_max_age_seconds)
    return value.decode() if isinstance(value, bytes) else value


def clear_cache() -> None:
    """Forget cached secret values (tests switch between moto contexts)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]


def provider_api_key(settings: Settings, route: Route) -> str:
    """The bearer key for ``route``'s provider (a plain string or ``{"api_key": ...}``)."""
    name = key_secret_for(settings, route)
    if not name:
        if settings.provider_api_key:
            return settings.provider_api_key
        raise RuntimeError(f"no API key secret configured for route {route!r}")
    raw = str(_get_secret(name, settings)).strip()
    if raw.startswith("{"):
        return str(json.loads(raw)["api_key"])
    return raw


def versioned_keys(settings: Settings, secret_name: str, inline_json: str, what: str) -> dict[str, str]:
    """Signing keys ``{"active": "v1", "v1": "...", "v0": "..."}`` from a secret (or inline JSON).

    Rotation: add a version, make it active, remove the old one once nothing signed with it
    is still in use.
    """
    keys: Any = _get_secret(secret_name, settings, as_json=True) if secret_name else None
    if keys is None and inline_json:
        keys = json.loads(inline_json)
    if keys is None:
        raise RuntimeError(f"no {what} key configured")
    if not isinstance(keys, dict) or keys.get("active") not in keys:
        raise RuntimeError(f"{what} secret must be JSON with an 'active' version present")
    return {str(k): str(v) for k, v in keys.items()}


def callback_keys(settings: Settings) -> dict[str, str]:
    """The callback-signing keys (also sign list cursors)."""
    return versioned_keys(settings, settings.callback_secret, settings.callback_keys_json, "callback signing (CALLBACK_SECRET)")
