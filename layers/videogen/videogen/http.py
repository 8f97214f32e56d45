"""The one HTTP client factory (timeouts always set) and the provider retry policy."""

from __future__ import annotations

import functools
import random
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx

from .errors import ProviderUnavailable, ProviderUncertain
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


# An attempt is started only if it has at least this long before the deadline.
MIN_ATTEMPT_SECONDS = 1.0
# Answers that say the request was not processed: safe to resend even a paid call.
NOT_PROCESSED = frozenset({408, 425, 429})


def request_timeout(settings: Settings, deadline: float | None) -> httpx.Timeout:
    """Per-request timeouts that never run past ``deadline`` (a ``time.monotonic()`` value)."""
    connect, read = settings.connect_timeout_seconds, settings.read_timeout_seconds
    if deadline is not None:
        left = max(MIN_ATTEMPT_SECONDS, deadline - time.monotonic())
        connect, read = min(connect, left), min(read, left)
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def _refuse_a_long_wait(hint: float | None, settings: Settings, what: str, last: str, attempts: int) -> None:
    """A ``Retry-After`` past the backoff cap is not cut short here: give up at once with the
    hint, for a caller that can wait (the workflow)."""
    if hint is not None and hint > settings.retry_max_delay_seconds:
        raise ProviderUnavailable(
            f"{what} unavailable ({last}); it asks to retry after {hint:.0f} s",
            attempts=attempts,
            retry_after_seconds=round(hint, 3),
        )


def _time_for_another(deadline: float | None, delay: float, clock: Callable[[], float]) -> bool:
    return deadline is None or clock() + delay + MIN_ATTEMPT_SECONDS <= deadline


def send_with_retries(
    send: Callable[[], httpx.Response],
    settings: Settings,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "provider",
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """For idempotent calls (status GETs): call ``send`` until it answers something other
    than 429/5xx, at most ``attempts`` times and never starting an attempt past ``deadline``.

    Transport errors count as retryable. A ``Retry-After`` longer than the backoff cap is
    honoured by not retrying here at all (retrying sooner would break the provider's rule); the
    error then carries ``retry_after_seconds`` for a caller that can wait (the workflow).
    Raises :class:`ProviderUnavailable` when every attempt failed; any other answer (2xx, 4xx)
    is returned for the caller to judge. ``send`` should take its timeouts from
    :func:`request_timeout` with the same deadline, so the whole call ends by then.
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
            _refuse_a_long_wait(hint, settings, what, last, attempt + 1)
        if attempt + 1 < attempts:
            delay = backoff_delay(attempt, settings, hint)
            if not _time_for_another(deadline, delay, clock):
                raise ProviderUnavailable(f"{what} unavailable ({last}); no time left for another attempt", attempts=attempt + 1)
            sleep(delay)
    raise ProviderUnavailable(f"{what} unavailable after {attempts} attempts ({last})", attempts=attempts)


def send_once(
    send: Callable[[], httpx.Response],
    settings: Settings,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "provider",
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """For calls that start paid work: at most one request that may have reached the provider.

    Resent only when the request surely did not arrive (no connection: refused, DNS, connect
    timeout, no free connection) or the provider said it did not take it (408, 425, 429, or
    503 with ``Retry-After``). After an ambiguous failure (read/write timeout, connection
    dropped mid-request, 500/502/504, a 503 without ``Retry-After``) it raises
    :class:`ProviderUncertain`: a provider job may exist, so the caller reconciles or fails
    loudly, and never resends.
    """
    attempts = attempts or settings.submit_max_attempts
    last: str = ""
    for attempt in range(attempts):
        hint: float | None = None
        try:
            response = send()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
            last = f"{type(exc).__name__}: {exc}"  # nothing was sent
        except httpx.TransportError as exc:
            raise ProviderUncertain(
                f"{what}: the request may have reached the provider ({type(exc).__name__}); a provider job may exist",
                attempts=attempt + 1,
            ) from exc
        else:
            hint = retry_after_seconds(response)
            refused = response.status_code in NOT_PROCESSED or (response.status_code == 503 and hint is not None)
            if not refused and response.status_code in RETRYABLE:
                raise ProviderUncertain(
                    f"{what}: the provider answered HTTP {response.status_code}; a provider job may exist",
                    attempts=attempt + 1,
                    http_status=response.status_code,
                )
            if not refused:
                return response
            last = f"HTTP {response.status_code}"
            _refuse_a_long_wait(hint, settings, what, last, attempt + 1)
        if attempt + 1 < attempts:
            delay = backoff_delay(attempt, settings, hint)
            if not _time_for_another(deadline, delay, clock):
                break
            sleep(delay)
    raise ProviderUnavailable(f"{what} unavailable ({last}); the request never reached the provider", attempts=attempts)
