"""The one map from a route to its provider implementation.

Adding a provider style: a module with a client and a class implementing
:class:`~videogen.providers.Provider`, and one line in :data:`PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from .. import secrets
from ..models import Route
from ..settings import Settings, base_url_for
from . import Provider
from .legacy import LegacyApi, LegacyProvider
from .official import OfficialApi, OfficialProvider
from .task import TaskApi, TaskProvider

Factory = Callable[[Settings, str, Callable[[], str], httpx.Client], Provider]

PROVIDERS: dict[Route, Factory] = {
    "task": lambda settings, url, key, http: TaskProvider(TaskApi(settings, url, key, http), settings),
    "official": lambda settings, url, key, http: OfficialProvider(OfficialApi(settings, url, key, http), settings),
    "legacy": lambda settings, url, key, http: LegacyProvider(LegacyApi(settings, url, key, http), settings),
}


def provider_for(settings: Settings, http: httpx.Client, route: Route) -> Provider:
    """The provider of ``route``, with its base URL and API key from the configuration."""
    factory = PROVIDERS[route]
    return factory(settings, base_url_for(settings, route), lambda: secrets.provider_api_key(settings, route), http)
