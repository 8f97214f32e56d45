"""Safe downloads of provider result URLs: nothing on our network is reachable through them.

A result URL comes from a third party (the provider's status answer or callback), so it is
treated as hostile input:

* only ``https`` (plain ``http`` only with the development-only local-stack switch);
* the host must be on an allowlist: the configured provider hosts plus
  ``DOWNLOAD_ALLOWED_HOSTS`` (``cdn.example.com``, ``*.example.com``, or ``*`` for any name);
  IP literals only when listed exactly; no user-info in the URL;
* every address the name resolves to must be global: loopback, link-local (the instance
  metadata service at 169.254.169.254), private, shared, reserved, multicast and the IPv6
  forms that embed such an IPv4 address (mapped, compatible, NAT64, 6to4) are refused;
* the check happens inside the connection itself (an ``httpcore`` network backend), and the
  socket connects to the very address that was checked: a second DNS answer can never be
  used (no DNS-rebinding window). The URL keeps its host name, so TLS SNI, certificate
  verification and the ``Host`` header are those of the name;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each one re-checked, and
  credentials are dropped when a redirect leaves the origin;
* connect, read and write timeouts never exceed the time left before the caller's deadline,
  and every socket read is clamped to that deadline, so a slow drip cannot outlive the Lambda.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from .errors import DeadlineExceeded, TransferFailed
from .http import default_ssl_context, make_client
from .settings import Settings

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 4096

# resolver(host, port) -> the addresses the name resolves to (tests inject their own).
Resolver = Callable[[str, int], Sequence[str]]

NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

# The deadline of the download running in this thread/context; every socket read honours it.
_deadline: ContextVar[float | None] = ContextVar("videogen_download_deadline", default=None)


class DownloadRefused(TransferFailed):
    """The result can never be stored: retrying would not help, so the job fails now.

    Raised for a URL the policy refuses, a download over the size cap, bytes that are not an
    MP4, or an answer that says the file is gone or forbidden.
    """


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def ip_refusal(address: str, *, allow_loopback: bool = False) -> str | None:
    """Why a connection to ``address`` is refused, or ``None`` when it is a global address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a link-local scope id is not the address
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = ip_refusal(str(embedded), allow_loopback=allow_loopback)
            return f"{ip} embeds {embedded}: {reason}" if reason else None
        if ip in NAT64_LOCAL_USE or (ip in IPV4_COMPATIBLE and not (ip.is_loopback or ip.is_unspecified)):
            return f"{ip} is a translated or deprecated IPv6 form"
    if allow_loopback and ip.is_loopback:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (such as the instance metadata service)"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if ip.is_private or not ip.is_global:
        return f"{ip} is not a global address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def ip_literal(host: str) -> bool:
    """True for any spelling of an IP address, including ``127.1`` and ``0x7f000001``."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(bare)  # the legacy forms getaddrinfo would still accept
        return True
    except OSError:
        return False


def parse_allowed_hosts(text: str) -> tuple[str, ...]:
    """``"a.example, *.cdn.example"`` -> ``("a.example", "*.cdn.example")`` (lower-case)."""
    entries = (part.strip().lower().rstrip(".") for part in text.replace(";", ",").replace(" ", ",").split(","))
    return tuple(dict.fromkeys(_literal_address(entry) if ip_literal(entry) else entry for entry in entries if entry))


@dataclass(frozen=True)
class DownloadPolicy:
    """What may be downloaded. Build it with :meth:`from_settings`."""

    allowed_hosts: tuple[str, ...]
    allow_local_stack: bool = False
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadPolicy:
        """Provider hosts are always allowed; ``DOWNLOAD_ALLOWED_HOSTS`` adds more (``*``: any)."""
        provider_hosts: list[str] = []
        for base in (settings.task_api_base_url, settings.official_api_base_url, settings.legacy_api_base_url):
            if base:
                try:
                    host = httpx.URL(base).host
                except httpx.InvalidURL:
                    continue
                if host:
                    provider_hosts.extend(parse_allowed_hosts(host))
        configured = parse_allowed_hosts(settings.download_allowed_hosts)
        return cls(
            allowed_hosts=tuple(dict.fromkeys([*provider_hosts, *configured])),
            allow_local_stack=settings.allow_insecure_downloads_for_local_stack,
        )

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (a name or an IP literal) is on the allowlist."""
        host = host.lower().rstrip(".")
        if ip_literal(host):
            # IP literals never match a wildcard: they must be listed as they are.
            address = _literal_address(host)
            return address in self.allowed_hosts or (self.allow_local_stack and ipaddress.ip_address(address).is_loopback)
        for entry in self.allowed_hosts:
            if entry == "*" or entry == host:
                return True
            if entry.startswith("*.") and host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        return self.allow_local_stack and host == "localhost"

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL by its scheme, user-info, host and literal address; names resolve later."""
        schemes = ("https", "http") if self.allow_local_stack else ("https",)
        if url.scheme not in schemes:
            raise DownloadRefused(f"result URL refused: scheme {url.scheme or 'none'!r} is not https")
        if url.userinfo:
            raise DownloadRefused("result URL refused: it carries user credentials")
        host = url.host
        if not host:
            raise DownloadRefused("result URL refused: it has no host")
        if not self.host_allowed(host):
            kind = "IP address" if ip_literal(host) else "host"
            raise DownloadRefused(f"result URL refused: {kind} {host!r} is not in DOWNLOAD_ALLOWED_HOSTS")
        if ip_literal(host):
            reason = ip_refusal(_literal_address(host), allow_loopback=self.allow_local_stack)
            if reason:
                raise DownloadRefused(f"result URL refused: {reason}")

    def checked_addresses(self, host: str, port: int, resolver: Resolver) -> list[str]:
        """Resolve ``host`` once and return its addresses if *every* one of them is allowed."""
        if ip_literal(host):
            addresses = [_literal_address(host)]
        else:
            try:
                addresses = [str(a) for a in resolver(host, port)]
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolved to no address")
        for address in addresses:
            reason = ip_refusal(address, allow_loopback=self.allow_local_stack)
            if reason:
                raise DownloadRefused(f"result URL refused: {host!r} resolves to {reason}")
        return addresses


def _literal_address(host: str) -> str:
    bare = host.strip("[]")
    try:
        return str(ipaddress.ip_address(bare.split("%", 1)[0]))
    except ValueError:
        return socket.inet_ntoa(socket.inet_aton(bare))


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read and write ends by the current download deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    @staticmethod
    def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
        deadline = _deadline.get()
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise error("download deadline reached")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> _DeadlineStream:
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, self._clamp(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Resolves and checks the host inside ``connect_tcp`` and dials only a checked address."""

    def __init__(self, policy: DownloadPolicy, resolver: Resolver, inner: httpcore.NetworkBackend | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.checked_addresses(host, port, self.resolver)
        error: Exception | None = None
        for address in addresses:
            try:
                timeout = _DeadlineStream._clamp(timeout, httpcore.ConnectTimeout)
                stream = self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise DownloadRefused("result URL refused: unix sockets are never used for downloads")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (request mapping, errors, streaming) over a :class:`PinnedBackend`.

    httpx 0.28 has no public way to pass an ``httpcore`` network backend, so the transport's
    connection pool is replaced by one built with the public ``httpcore.ConnectionPool``
    constructor. Proxies from the environment are never used: they would dial for us.
    ``tests/security/test_safe_http.py`` proves the backend is the one that connects.
    """

    def __init__(self, backend: PinnedBackend, *, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context or default_ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class SafeDownloader:
    """Opens provider result URLs under a :class:`DownloadPolicy`; one per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        network_backend: httpcore.NetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        policy: DownloadPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or DownloadPolicy.from_settings(settings)
        self.backend = PinnedBackend(self.policy, resolver or system_resolver, network_backend)
        self.client = make_client(settings, transport=PinnedTransport(self.backend, ssl_context=ssl_context))

    def timeout(self, deadline: float | None) -> httpx.Timeout:
        """Connect/read/write timeouts from settings, none longer than the time left."""
        connect, read = self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded("no time left to download the result", bytes_so_far=0)
            connect, read = min(connect, left), min(read, left)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    @contextmanager
    def open(
        self, url: str, *, headers: dict[str, str] | None = None, budget_seconds: float | None = None
    ) -> Iterator[httpx.Response]:
        """GET ``url``; yields the final (non-redirect) response, streaming and not yet read.

        Redirects are followed here, at most ``policy.max_redirects``, each re-checked;
        headers given by the caller (such as an API key) are dropped when a redirect leaves
        the URL's origin. ``budget_seconds`` bounds everything, reading the body included.
        Raises :class:`DownloadRefused` for a refused URL, :class:`DeadlineExceeded` when the
        budget is already spent.
        """
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        if len(url) > MAX_URL_LENGTH:
            raise DownloadRefused("result URL refused: it is too long")
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise DownloadRefused(f"result URL refused: {exc}") from exc
        origin = _origin(current)
        sent_headers = dict(headers or {})
        token = _deadline.set(deadline)
        try:
            for hop in range(self.policy.max_redirects + 1):
                self.policy.check_url(current)
                request = self.client.build_request("GET", current, headers=sent_headers, timeout=self.timeout(deadline))
                response = self.client.send(request, stream=True)
                location = response.headers.get("location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    try:
                        yield response
                    finally:
                        response.close()
                    return
                response.close()
                if hop == self.policy.max_redirects:
                    raise DownloadRefused(f"result URL refused: more than {self.policy.max_redirects} redirects")
                try:
                    current = current.join(location)
                except httpx.InvalidURL as exc:
                    raise DownloadRefused(f"result URL refused: bad redirect: {exc}") from exc
                if _origin(current) != origin:
                    sent_headers = {}
        finally:
            _deadline.reset(token)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
