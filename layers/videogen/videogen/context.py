"""What every operation works with: settings, the job repository, HTTP clients, providers.

One :class:`Context` per process (:func:`get_context`); tests call :func:`reset` between
moto contexts. Operations take the context as their first argument and keep no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import httpx

from . import aws, secrets
from .http import make_client
from .models import Route
from .providers import Provider
from .providers.registry import provider_for
from .repository import JobRepository
from .safe_http import DownloadPolicy, SafeDownloader
from .settings import Settings, get_settings


@dataclass
class Context:
    """Settings plus the shared clients of one process."""

    settings: Settings
    repo: JobRepository
    http: httpx.Client
    # Result URLs come from third parties: they are fetched only through the safe downloader.
    downloader: SafeDownloader

    @classmethod
    def create(cls, settings: Settings) -> Context:
        return cls(
            settings=settings,
            repo=JobRepository(settings.jobs_table, settings.job_ttl_days),
            http=make_client(settings),
            downloader=SafeDownloader(settings),
        )

    def provider(self, route: Route) -> Provider:
        """The provider implementation of ``route`` (see :mod:`videogen.providers.registry`)."""
        return provider_for(self.settings, self.http, route)

    @cached_property
    def image_downloader(self) -> SafeDownloader:
        """Client images may live on any public host: the safe downloader's address checks,
        scheme rule and redirect re-checks apply, but not the provider-host allowlist."""
        policy = DownloadPolicy(allowed_hosts=("*",), allow_local_stack=self.settings.allow_insecure_downloads_for_local_stack)
        return SafeDownloader(self.settings, policy=policy)


@lru_cache(maxsize=1)
def get_context() -> Context:
    """The process-wide context (tests call :func:`reset`)."""
    return Context.create(get_settings())


def reset() -> None:
    """Forget cached settings, clients and context (between tests)."""
    get_context.cache_clear()
    get_settings.cache_clear()
    aws.reset_clients()
    secrets.clear_cache()
