"""Secrets: provider API keys and the callback-signing keys, cached by Powertools."""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities import parameters

from .models import Route
from .settings import Settings, key_secret_for


def _secret(name: str, settings: Settings) -> str:
    value = parameters.get_secret(name, max_age=settings.secrets_max_age_seconds)
    return value if isinstance(value, str) else value.decode()


def provider_api_key(settings: Settings, route: Route) -> str:
    """The bearer key for ``route``'s provider (a plain string or ``{"api_key": ...}``)."""
    name = key_secret_for(settings, route)
    if not name:
        if settings.provider_api_key:
            return settings.provider_api_key
        raise RuntimeError(f"no API key secret configured for route {route!r}")
    raw = _secret(name, settings).strip()
    if raw.startswith("{"):
        return str(json.loads(raw)["api_key"])
    return raw


def callback_keys(settings: Settings) -> dict[str, str]:
    """The callback-signing keys: ``{"active": "v1", "v1": "...", "v0": "..."}``."""
    raw = settings.callback_keys_json
    if settings.callback_secret:
        raw = _secret(settings.callback_secret, settings)
    if not raw:
        raise RuntimeError("no callback signing key configured (CALLBACK_SECRET)")
    keys = json.loads(raw)
    if not isinstance(keys, dict) or keys.get("active") not in keys:
        raise RuntimeError("callback signing secret must be JSON with an 'active' version present")
    return {str(k): str(v) for k, v in keys.items()}
