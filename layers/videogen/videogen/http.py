"""The one HTTP client factory (timeouts always set) and the provider retry policy."""

from __future__ import annotations

import functools
import random
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx

from .errors import ProviderUnavailable
from .settings import Settings

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default trust store (certifi, or ``SSL_CERT_FILE``), loaded once per process.

    Loading it takes tens of milliseconds; every client of the process shares the context.
    """
    return httpx.create_ssl_context()


def make_client(
    settings: Settings, *, read_timeout: float | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client with connect/read/write/pool timeouts; redirects are not followed.

    ``transport`` replaces the default one (the safe downloader pins connections with it).
    """
    read = read_timeout if read_timeout is not None else settings.read_timeout_seconds
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_seconds, read=read, write=read, pool=settings.connect_timeout_seconds
    )
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": "videogen-pipeline/0.1"},
        transport=transport,
        verify=default_ssl_context(),
    )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), if the server sent one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt: int, settings: Settings, hint: float | None = None) -> float:
    """Full-jitter exponential backoff, capped; a server hint wins but is capped too."""
    if hint is not None:
        return min(hint, settings.retry_max_delay_seconds)
    ceiling = min(settings.retry_max_delay_seconds, settings.retry_base_delay_seconds * (2**attempt))
    return random.uniform(0, ceiling)


def send_with_retries(
    send: Callable[[], httpx.Response],
    settings: Settings,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "provider",
) -> httpx.Response:
    """Call ``send`` until it answers something other than 429/5xx, at most ``attempts`` times.

    Transport errors count as retryable. A ``Retry-After`` longer than the backoff cap is
    honoured by not retrying here at all (retrying sooner would break the provider's rule); the
    error then carries ``retry_after_seconds`` for a caller that can wait (the workflow).
    Raises :class:`ProviderUnavailable` when every attempt failed; any other answer (2xx, 4xx)
    is returned for the caller to judge.
    """
    attempts = attempts or settings.submit_max_attempts
    last: str = ""
    for attempt in range(attempts):
        hint: float | None = None
        try:
            response = send()
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code not in RETRYABLE:
                return response
            hint = retry_after_seconds(response)
            last = f"HTTP {response.status_code}"
            if hint is not None and hint > settings.retry_max_delay_seconds:
                raise ProviderUnavailable(
                    f"{what} unavailable ({last}); it asks to retry after {hint:.0f} s",
                    attempts=attempt + 1,
                    retry_after_seconds=round(hint, 3),
                )
        if attempt + 1 < attempts:
            sleep(backoff_delay(attempt, settings, hint))
    raise ProviderUnavailable(f"{what} unavailable after {attempts} attempts ({last})", attempts=attempts)
