"""The safe downloader: URL policy, address checks, pinned connections, redirects, deadlines.

No test needs DNS or a network: names resolve through an injected resolver, and real
connections go to servers on 127.0.0.1 through a backend that records the address it was
asked to dial.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from local.tls import LocalCA
from tests.conftest import mp4_bytes
from tests.security.servers import DialLoopback, LoopbackServer, NoNetwork, Resolver, Seen, drip
from videogen.errors import DeadlineExceeded, TransferFailed
from videogen.safe_http import (
    DownloadPolicy,
    DownloadRefused,
    PinnedBackend,
    SafeDownloader,
    ip_literal,
    ip_refusal,
    parse_allowed_hosts,
)
from videogen.settings import Settings
from videogen.storage import download_and_store

CDN = "cdn.provider.test"
PUBLIC_IP = "93.184.216.34"


def settings(**overrides: Any) -> Settings:
    return Settings.from_env().model_copy(update=overrides)


def fetch(downloader: SafeDownloader, url: str, **kwargs: Any) -> tuple[int, bytes]:
    with downloader.open(url, **kwargs) as response:
        return response.status_code, response.read()


# -- the URL policy (nothing is resolved or dialled for a refused URL) ---------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://cdn.provider.test/v.mp4", "scheme 'http'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://cdn.provider.test/v.mp4", "scheme 'ftp'"),
        ("gopher://cdn.provider.test:70/_x", "scheme 'gopher'"),
        ("https://user:secret@cdn.provider.test/v.mp4", "credentials"),
        ("https://evil.example/v.mp4", "host 'evil.example' is not in DOWNLOAD_ALLOWED_HOSTS"),
        ("https://evilprovider.test/v.mp4", "not in DOWNLOAD_ALLOWED_HOSTS"),
        ("https://provider.test.evil.example/v.mp4", "not in DOWNLOAD_ALLOWED_HOSTS"),
        ("https://127.0.0.1/v.mp4", "IP address"),
        ("https://[::1]/v.mp4", "IP address"),
        ("https://169.254.169.254/latest/meta-data/", "IP address"),
        ("https://[::ffff:169.254.169.254]/", "IP address"),
        ("https://2130706433/v.mp4", "IP address"),
        ("https://0x7f.1/v.mp4", "IP address"),
        ("https://127.1/v.mp4", "IP address"),
        ("https://8.8.8.8/v.mp4", "IP address"),
        ("https://localhost/v.mp4", "not in DOWNLOAD_ALLOWED_HOSTS"),
        ("https:///v.mp4", "no host"),
        ("not a url at all", "scheme"),
        ("https://cdn.provider.test/" + "a" * 5000, "too long"),
    ],
)
def test_refused_urls_are_refused_before_any_lookup_or_connection(url, reason):
    nothing = NoNetwork()
    downloader = SafeDownloader(settings(), resolver=nothing, network_backend=nothing)  # type: ignore[arg-type]
    with pytest.raises(DownloadRefused, match="refused") as refused:
        fetch(downloader, url)
    assert reason in refused.value.message


@pytest.mark.parametrize(
    "host",
    [
        "cdn.provider.test",
        "CDN.Provider.TEST",
        "cdn.provider.test.",
        "a.b.provider.test",
        "task.provider.test",
        "official.provider.test",
    ],
)
def test_allowlisted_hosts(host):
    assert DownloadPolicy.from_settings(settings()).host_allowed(host)


def test_default_allowlist_is_the_provider_hosts_only():
    policy = DownloadPolicy.from_settings(settings(download_allowed_hosts=""))
    assert policy.allowed_hosts == ("task.provider.test", "official.provider.test", "legacy.provider.test")
    assert not policy.host_allowed("cdn.provider.test")


def test_star_allows_any_name_but_never_a_literal_or_a_private_address():
    policy = DownloadPolicy.from_settings(settings(download_allowed_hosts="*"))
    assert policy.host_allowed("anything.example")
    assert not policy.host_allowed("203.0.113.9")
    downloader = SafeDownloader(settings(download_allowed_hosts="*"), resolver=Resolver({"intranet.example": ["10.1.2.3"]}))
    with pytest.raises(DownloadRefused, match=r"10\.1\.2\.3 is not a global address"):
        fetch(downloader, "https://intranet.example/v.mp4")


def test_an_ip_literal_is_allowed_only_when_listed_and_global():
    policy = DownloadPolicy.from_settings(settings(download_allowed_hosts="203.0.113.9, [2001:db8::1], 93.184.216.34"))
    assert not policy.host_allowed("203.0.113.10")
    policy.check_url(httpx.URL("https://93.184.216.34/v.mp4"))
    with pytest.raises(DownloadRefused, match="not a global address"):
        policy.check_url(httpx.URL("https://203.0.113.9/v.mp4"))  # listed, but a documentation range
    with pytest.raises(DownloadRefused, match="not a global address"):
        policy.check_url(httpx.URL("https://[2001:db8::1]/v.mp4"))


def test_allowed_hosts_parsing():
    assert parse_allowed_hosts(" A.example ,*.CDN.example; b.example.  c.example ") == (
        "a.example",
        "*.cdn.example",
        "b.example",
        "c.example",
    )
    assert parse_allowed_hosts("[::1], 0x7f.1") == ("::1", "127.0.0.1")


# -- addresses -----------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1", "127.255.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "169.254.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "192.0.2.1", "198.18.0.1", "240.0.0.1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::8.8.8.8",
    "2002:7f00:1::1", "2002:a9fe:a9fe::", "2001::1",
]  # fmt: skip
GLOBAL_ADDRESSES = [
    "8.8.8.8",
    "93.184.216.34",
    "1.1.1.1",
    "2606:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_global_addresses_are_refused(address):
    assert ip_refusal(address) is not None


@pytest.mark.parametrize("address", GLOBAL_ADDRESSES)
def test_global_addresses_are_allowed(address):
    assert ip_refusal(address) is None


def test_the_local_stack_switch_allows_loopback_and_nothing_else():
    assert ip_refusal("127.0.0.1", allow_loopback=True) is None
    assert ip_refusal("::1", allow_loopback=True) is None
    assert ip_refusal("::ffff:127.0.0.1", allow_loopback=True) is None
    for address in ("169.254.169.254", "10.0.0.1", "192.168.0.1", "fe80::1", "0.0.0.0"):
        assert ip_refusal(address, allow_loopback=True) is not None


ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@hypothesis_settings(deadline=None, derandomize=True)
@given(ipv4)
def test_every_ipv6_form_embedding_an_ipv4_address_is_judged_as_that_address(address):
    verdict = ip_refusal(str(address)) is None
    mapped = ipaddress.IPv6Address(int(ipaddress.IPv6Address("::ffff:0:0")) | int(address))
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    sixtofour = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2002::")) | (int(address) << 80))
    assert (ip_refusal(str(mapped)) is None) == verdict
    assert (ip_refusal(str(nat64)) is None) == verdict
    assert (ip_refusal(str(sixtofour)) is None) == verdict


@hypothesis_settings(deadline=None, derandomize=True)
@given(
    st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]),
    st.data(),
)
def test_any_address_in_a_private_range_is_refused(network, data):
    net = ipaddress.IPv4Network(network)
    address = net[data.draw(st.integers(min_value=0, max_value=net.num_addresses - 1))]
    assert ip_refusal(str(address)) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "2130706433", "0x7f000001", "017700000001", "127.1", "0x7f.1"])
def test_every_spelling_of_an_ip_address_counts_as_a_literal(host):
    assert ip_literal(host)


@pytest.mark.parametrize("host", ["cdn.provider.test", "127.0.0.1.nip.io", "1e100.net", "x1"])
def test_names_are_not_literals(host):
    assert not ip_literal(host)


# -- resolution: every address must be global, and only checked addresses are dialled -------


@pytest.mark.parametrize(
    "answers",
    [["10.0.0.5"], ["169.254.169.254"], [PUBLIC_IP, "127.0.0.1"], ["::1"], ["::ffff:192.168.0.1"], ["64:ff9b::a9fe:a9fe"]],
)
def test_a_name_resolving_to_any_non_global_address_is_refused(answers):
    backend = DialLoopback(port=9)  # never used: the refusal comes first
    downloader = SafeDownloader(settings(), resolver=Resolver({CDN: answers}), network_backend=backend)
    with pytest.raises(DownloadRefused, match="resolves to"):
        fetch(downloader, f"https://{CDN}/v.mp4")
    assert backend.dialled == []


def test_a_name_that_does_not_resolve_is_a_retryable_transfer_failure(aws):
    downloader = SafeDownloader(settings(), resolver=Resolver({}))
    with pytest.raises(TransferFailed, match="ConnectError") as failed:
        download_and_store(f"https://{CDN}/v.mp4", settings=settings(), key="videos/x.mp4", metadata={}, downloader=downloader)
    assert not isinstance(failed.value, DownloadRefused)


@pytest.fixture
def ca(tmp_path) -> LocalCA:
    return LocalCA(tmp_path)


def video_route(body: bytes, **headers: str):
    def reply(_seen: Seen):
        return 200, {"Content-Type": "video/mp4", "Content-Length": str(len(body)), **headers}, [body]

    return reply


def test_connection_is_pinned_to_the_checked_address_with_sni_host_and_certificate_of_the_name(ca):
    # Given a TLS server presenting a certificate for the CDN's name
    body = mp4_bytes(10_000)
    server = LoopbackServer({"/v.mp4": video_route(body)}, tls=ca.server_context(CDN))
    with server.running():
        backend = DialLoopback(server.port)
        resolver = Resolver({CDN: [PUBLIC_IP]})
        downloader = SafeDownloader(settings(), resolver=resolver, network_backend=backend, ssl_context=ca.client_context())

        # When the result is downloaded
        status, received = fetch(downloader, f"https://{CDN}/v.mp4")

    # Then the socket was dialled to the one address that was checked, resolved once
    assert backend.dialled == [(PUBLIC_IP, 443)]
    assert resolver.calls == [CDN]
    # And TLS and HTTP still speak to the name: SNI, certificate check and Host header
    assert server.sni_names == [CDN]
    assert server.seen[0].headers["host"] == CDN
    assert (status, received) == (200, body)


def test_a_certificate_for_another_name_is_refused(ca):
    server = LoopbackServer({"/v.mp4": video_route(mp4_bytes())}, tls=ca.server_context("other.example"))
    with server.running():
        downloader = SafeDownloader(
            settings(),
            resolver=Resolver({CDN: [PUBLIC_IP]}),
            network_backend=DialLoopback(server.port),
            ssl_context=ca.client_context(),
        )
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            fetch(downloader, f"https://{CDN}/v.mp4")
    assert server.seen == []


def test_dns_rebinding_cannot_reach_a_private_address(ca):
    # Given a name that answers a public address first and loopback afterwards
    body = mp4_bytes(2000)
    server = LoopbackServer({"/v.mp4": video_route(body, Connection="close")}, tls=ca.server_context(CDN))
    with server.running():
        backend = DialLoopback(server.port)
        resolver = Resolver(None, [PUBLIC_IP], ["127.0.0.1"])
        downloader = SafeDownloader(settings(), resolver=resolver, network_backend=backend, ssl_context=ca.client_context())

        # When it is fetched twice (each on a new connection)
        assert fetch(downloader, f"https://{CDN}/v.mp4") == (200, body)
        with pytest.raises(DownloadRefused, match=r"127\.0\.0\.1 is a loopback address"):
            fetch(downloader, f"https://{CDN}/v.mp4")

    # Then each connection used the answer it checked; loopback was never dialled
    assert backend.dialled == [(PUBLIC_IP, 443)]
    assert resolver.calls == [CDN, CDN]


def test_the_transport_ignores_proxy_settings_from_the_environment(monkeypatch, ca):
    # A proxy would dial for us, past the address checks: it must never be used.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    body = mp4_bytes(1000)
    server = LoopbackServer({"/v.mp4": video_route(body)}, tls=ca.server_context(CDN))
    with server.running():
        downloader = SafeDownloader(
            settings(),
            resolver=Resolver({CDN: [PUBLIC_IP]}),
            network_backend=DialLoopback(server.port),
            ssl_context=ca.client_context(),
        )
        assert fetch(downloader, f"https://{CDN}/v.mp4") == (200, body)


def test_unix_sockets_are_refused():
    backend = PinnedBackend(DownloadPolicy(allowed_hosts=("*",)), Resolver({}))
    with pytest.raises(DownloadRefused):
        backend.connect_unix_socket("/var/run/docker.sock")


# -- the local-stack switch (development only) ----------------------------------------------


def test_plain_http_to_loopback_is_refused_unless_the_local_stack_switch_is_on():
    body = mp4_bytes(3000)
    server = LoopbackServer({"/v.mp4": video_route(body)})
    with server.running():
        url = f"http://127.0.0.1:{server.port}/v.mp4"
        with pytest.raises(DownloadRefused, match="scheme 'http'"):
            fetch(SafeDownloader(settings()), url)
        local = SafeDownloader(settings(allow_insecure_downloads_for_local_stack=True))
        assert fetch(local, url) == (200, body)
        assert fetch(local, f"http://localhost:{server.port}/v.mp4")[0] == 200
    assert server.seen[0].headers["host"] == f"127.0.0.1:{server.port}"


def test_the_local_stack_switch_still_refuses_metadata_and_private_addresses():
    local = SafeDownloader(
        settings(allow_insecure_downloads_for_local_stack=True, download_allowed_hosts="*"),
        resolver=Resolver({"metadata.example": ["169.254.169.254"], "lan.example": ["192.168.1.10"]}),
    )
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.example/",
        "http://lan.example/v.mp4",
        "http://10.0.0.1/",
    ):
        with pytest.raises(DownloadRefused):
            fetch(local, url)


# -- redirects: followed by hand, at most three, each re-checked ----------------------------


@respx.mock
def test_three_redirects_are_followed_and_relative_locations_resolved():
    body = mp4_bytes(500)
    respx.get(f"https://{CDN}/a").mock(return_value=httpx.Response(302, headers={"Location": "https://dl.provider.test/b"}))
    respx.get("https://dl.provider.test/b").mock(return_value=httpx.Response(301, headers={"Location": "/c?sig=1"}))
    respx.get("https://dl.provider.test/c?sig=1").mock(return_value=httpx.Response(307, headers={"Location": "d.mp4"}))
    final = respx.get("https://dl.provider.test/d.mp4").mock(return_value=httpx.Response(200, content=body))
    assert fetch(SafeDownloader(settings()), f"https://{CDN}/a") == (200, body)
    assert final.call_count == 1


@respx.mock
def test_a_fourth_redirect_is_refused():
    for n in range(4):
        respx.get(f"https://{CDN}/{n}").mock(return_value=httpx.Response(302, headers={"Location": f"/{n + 1}"}))
    last = respx.get(f"https://{CDN}/4").mock(return_value=httpx.Response(200, content=mp4_bytes()))
    with pytest.raises(DownloadRefused, match="more than 3 redirects"):
        fetch(SafeDownloader(settings()), f"https://{CDN}/0")
    assert not last.called


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://cdn.provider.test/v.mp4", "scheme 'http'"),
        ("https://169.254.169.254/latest/meta-data/iam/security-credentials/", "IP address"),
        ("https://[::ffff:a9fe:a9fe]/", "IP address"),
        ("https://evil.example/v.mp4", "not in DOWNLOAD_ALLOWED_HOSTS"),
        ("file:///etc/passwd", "scheme 'file'"),
    ],
)
@respx.mock
def test_a_redirect_to_a_refused_url_is_refused(location, reason):
    respx.get(f"https://{CDN}/v.mp4").mock(return_value=httpx.Response(302, headers={"Location": location}))
    with pytest.raises(DownloadRefused, match="refused") as refused:
        fetch(SafeDownloader(settings()), f"https://{CDN}/v.mp4")
    assert reason in refused.value.message


@respx.mock
def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused_at_connect():
    # The redirect target is allowlisted by name; its address is checked when dialling.
    respx.get(f"https://{CDN}/v.mp4").mock(
        return_value=httpx.Response(302, headers={"Location": "https://internal.provider.test/v.mp4"})
    )
    respx.get("https://internal.provider.test/v.mp4").pass_through()
    resolver = Resolver({"internal.provider.test": ["169.254.169.254"]})
    with pytest.raises(DownloadRefused, match=r"169\.254\.169\.254 is a link-local address"):
        fetch(SafeDownloader(settings(), resolver=resolver, network_backend=DialLoopback(9)), f"https://{CDN}/v.mp4")
    assert resolver.calls == ["internal.provider.test"]


@respx.mock
def test_credentials_go_to_the_same_origin_only():
    respx.get("https://official.provider.test/v1/videos/v1/content").mock(
        return_value=httpx.Response(302, headers={"Location": "/v1/videos/v1/download"})
    )
    same = respx.get("https://official.provider.test/v1/videos/v1/download").mock(
        return_value=httpx.Response(302, headers={"Location": f"https://{CDN}/signed/v.mp4"})
    )
    other = respx.get(f"https://{CDN}/signed/v.mp4").mock(return_value=httpx.Response(200, content=mp4_bytes()))
    fetch(
        SafeDownloader(settings()),
        "https://official.provider.test/v1/videos/v1/content",
        headers={"Authorization": "Bearer sk-secret"},
    )
    assert same.calls.last.request.headers["authorization"] == "Bearer sk-secret"
    assert "authorization" not in other.calls.last.request.headers


# -- deadlines -------------------------------------------------------------------------------


def test_timeouts_never_exceed_the_time_left():
    downloader = SafeDownloader(settings(connect_timeout_seconds=5, read_timeout_seconds=30))
    timeout = downloader.timeout(time.monotonic() + 2.0)
    assert 1.5 < timeout.connect <= 2.0 and 1.5 < timeout.read <= 2.0 and 1.5 < timeout.write <= 2.0
    relaxed = downloader.timeout(time.monotonic() + 600)
    assert (relaxed.connect, relaxed.read) == (5, 30)
    assert downloader.timeout(None).read == 30
    with pytest.raises(DeadlineExceeded):
        downloader.timeout(time.monotonic() - 1)


def test_a_slow_drip_cannot_outlive_the_budget(aws):
    # Given a server that sends a byte every 0.1 s, forever inside the 30 s read timeout
    head = mp4_bytes(64)

    def slow(_seen: Seen):
        return 200, {"Content-Length": "100000"}, drip([head, *[b"\x00"] * 1000], 0.1)

    server = LoopbackServer({"/v.mp4": slow})
    local = settings(allow_insecure_downloads_for_local_stack=True, read_timeout_seconds=30)
    with server.running():
        started = time.monotonic()
        # When it is stored with a one-second budget
        with pytest.raises(DeadlineExceeded):
            download_and_store(
                f"http://127.0.0.1:{server.port}/v.mp4",
                settings=local,
                key="videos/slow.mp4",
                metadata={},
                deadline=started + 1.0,
                downloader=SafeDownloader(local),
            )
        elapsed = time.monotonic() - started
    # Then it stopped at the budget, not at the read timeout (30 s) nor at the drip's end (100 s);
    # the margin is wide so that a busy machine cannot fail it
    assert elapsed < 10


def test_a_server_that_stalls_before_answering_is_cut_at_the_budget():
    def stall(_seen: Seen) -> Any:
        time.sleep(15)
        return 200, {"Content-Length": "0"}, []

    server = LoopbackServer({"/v.mp4": stall})
    local = SafeDownloader(settings(allow_insecure_downloads_for_local_stack=True, read_timeout_seconds=30))
    with server.running():
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            fetch(local, f"http://127.0.0.1:{server.port}/v.mp4", budget_seconds=0.5)
        # Cut at the budget, long before the server would answer (15 s) or the read timeout (30 s)
        assert time.monotonic() - started < 7.5
