"""A throwaway certificate authority (``trustme``) for the local stack and the tests.

Real providers answer over https and their result links are https (the legacy route's
link is ``https://....mp4``), so the provider simulator does too: the stack makes a CA and
a server certificate for 127.0.0.1/localhost at start-up, and the functions trust that CA
through ``SSL_CERT_FILE`` (read by httpx), in their environment only. The download tests use
the same CA for their loopback TLS servers. Nothing is written outside the directory given;
the keys live as long as the stack (or the test).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass
class LocalTls:
    ca_file: Path  # trust this
    cert_file: Path  # the server's certificate chain
    key_file: Path  # the server's key


@dataclass
class LocalCA:
    """A CA whose certificate is written to ``directory/ca.pem``; it issues server certificates."""

    directory: Path
    ca: trustme.CA = field(default_factory=lambda: trustme.CA(organization_name="videogen local"))

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, *names: str, stem: str = "server") -> LocalTls:
        """A server certificate for ``names`` (host names or IP addresses), as PEM files."""
        leaf = self.ca.issue_cert(*names)
        tls = LocalTls(self.ca_file, self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem")
        tls.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(tls.key_file))
        tls.key_file.chmod(0o600)
        return tls

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server context presenting a certificate for ``names`` signed by this CA."""
        tls = self.issue(*names, stem=names[0].replace("*", "_"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context


def make_local_tls(directory: Path) -> LocalTls:
    """Write a CA certificate and a server certificate for 127.0.0.1/localhost into ``directory``."""
    return LocalCA(directory).issue("127.0.0.1", "localhost")
