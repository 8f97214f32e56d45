"""SigV4: a request the client signs verifies with botocore's own signature computation."""

from __future__ import annotations

import hmac
import json
import re

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from videogen_client.api import ApiClient
from videogen_client.signing import SigningError, SigV4, region_of

API = "https://abc123.execute-api.eu-west-1.amazonaws.com"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<headers>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify(request: httpx.Request, credentials: Credentials) -> bool:
    """What API Gateway does: rebuild the canonical request from what arrived and recompute the signature."""
    auth = AUTHORIZATION.match(request.headers["authorization"])
    assert auth, request.headers["authorization"]
    signed = auth["headers"].split(";")
    received = AWSRequest(
        method=request.method, url=str(request.url), data=request.content, headers={h: request.headers[h] for h in signed}
    )
    received.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(credentials, auth["service"], auth["region"])
    string_to_sign = signer.string_to_sign(received, signer.canonical_request(received))
    return hmac.compare_digest(signer.signature(string_to_sign, received), auth["signature"])


def capture(credentials: Credentials = CREDENTIALS) -> tuple[ApiClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": "job-1", "status": "queued"})

    client = ApiClient(API, auth=SigV4(credentials, "eu-west-1"), transport=httpx.MockTransport(answer))
    return client, seen


def test_a_signed_create_verifies_and_covers_body_path_and_idempotency_key():
    # Given a client signing with static credentials
    client, seen = capture()

    # When it creates a job with an idempotency key
    client.create({"prompt": "A lighthouse", "seconds": 8}, idempotency_key="key-1")

    # Then the request verifies, for service execute-api in the API's region
    request = seen[0]
    auth = AUTHORIZATION.match(request.headers["authorization"])
    assert auth and auth["key"] == "AKIDEXAMPLE" and auth["service"] == "execute-api" and auth["region"] == "eu-west-1"
    assert set(auth["headers"].split(";")) == {"host", "content-type", "idempotency-key", "x-amz-date"}
    assert verify(request, CREDENTIALS)

    # And any change to what was signed breaks it
    for tampered in (
        httpx.Request(
            "POST", request.url, headers=request.headers, content=json.dumps({"prompt": "A lighthouse", "seconds": 12})
        ),
        httpx.Request("POST", request.url.copy_with(path="/videos2"), headers=request.headers, content=request.content),
        httpx.Request("POST", request.url, headers={**request.headers, "idempotency-key": "key-2"}, content=request.content),
    ):
        assert not verify(tampered, CREDENTIALS)
    assert not verify(request, Credentials("AKIDEXAMPLE", "another-secret"))


def test_a_signed_read_with_a_query_and_temporary_credentials_verifies():
    temporary = Credentials("ASIAEXAMPLE", "secret", token="session-token")
    client, seen = capture(temporary)

    client.http.get("/videos", params={"status": "succeeded", "limit": 5})

    request = seen[0]
    assert request.headers["x-amz-security-token"] == "session-token"
    assert "x-amz-security-token" in AUTHORIZATION.match(request.headers["authorization"])["headers"]
    assert verify(request, temporary)


def test_each_retry_is_signed_afresh():
    calls: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503 if len(calls) == 1 else 200, json={"id": "job-1"})

    from videogen_client.api import Backoff

    client = ApiClient(API, auth=SigV4(CREDENTIALS, "eu-west-1"), transport=httpx.MockTransport(flaky), backoff=Backoff(base=0))
    client.get("job-1")
    assert len(calls) == 2 and all(verify(r, CREDENTIALS) for r in calls)


def test_region_comes_from_the_api_host_then_the_configuration(monkeypatch):
    assert region_of("https://abc.execute-api.ap-southeast-2.amazonaws.com/") == "ap-southeast-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert region_of("https://videos.example.com") == "eu-central-1"


def test_no_region_and_no_credentials_are_clear_errors(monkeypatch, tmp_path):
    # Given an environment with no AWS configuration at all (and no instance metadata lookups)
    for name in (
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(SigningError, match="AWS_REGION"):
        region_of("https://videos.example.com")
    with pytest.raises(SigningError, match="--no-sign"):
        SigV4.from_environment(API)
