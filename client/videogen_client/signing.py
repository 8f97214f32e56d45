"""SigV4 signing of API requests with botocore (service ``execute-api``).

The API's client routes use IAM auth by default. A request is signed with the caller's normal
AWS credential chain (environment, profile, SSO, instance role), exactly as the AWS CLI
would. The signature covers the method, path, query, body and a small fixed set of headers,
so nothing an HTTP stack may add or reorder on the way (``Accept-Encoding``,
``Connection``, ``User-Agent``) can break it.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

SERVICE = "execute-api"
# Besides these, botocore adds and signs X-Amz-Date and, with temporary credentials, X-Amz-Security-Token.
SIGNED_HEADERS = ("host", "content-type", "idempotency-key")
_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class SigningError(Exception):
    """No credentials or no region to sign with."""


def region_of(url: str, session: Session | None = None) -> str:
    """The region to sign for: from an ``execute-api`` host name, else the AWS configuration."""
    host = httpx.URL(url).host
    match = _API_HOST.search(host)
    if match:
        return match.group(1)
    region = (session or Session()).get_config_variable("region")
    if not region:
        raise SigningError(f"cannot tell the AWS region of {host}: set AWS_REGION (or a profile's region)")
    return str(region)


class SigV4(httpx.Auth):
    """An httpx auth flow that signs every request (each retry too) with botocore's SigV4."""

    requires_request_body = True

    def __init__(self, credentials: Any, region: str, service: str = SERVICE) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    @classmethod
    def from_environment(cls, url: str, profile: str | None = None) -> SigV4:
        """Credentials from the standard chain; region from the URL or the configuration."""
        session = Session(profile=profile)
        credentials = session.get_credentials()
        if credentials is None:
            raise SigningError(
                "no AWS credentials found to sign the request (configure them as for the AWS CLI, "
                "or pass --no-sign for an API deployed with ClientAuth=NONE or the local stack)"
            )
        return cls(credentials, region_of(url, session))

    def sign(self, request: httpx.Request) -> None:
        frozen = (
            self.credentials.get_frozen_credentials() if hasattr(self.credentials, "get_frozen_credentials") else self.credentials
        )
        headers = {name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers}
        aws_request = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        SigV4Auth(frozen, self.service, self.region).add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws_request.headers:
                request.headers[name] = aws_request.headers[name]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request
