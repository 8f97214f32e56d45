"""boto3 clients, created once per process.

``AWS_ENDPOINT_URL`` (read by boto3 itself) points every client at the local stack.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
# Presigned URLs with SigV4 (the default for new regions, required by KMS-encrypted objects).
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4"))


@cache
def client(service: str) -> Any:
    """A cached boto3 client for ``service``."""
    return boto3.client(service, config=_S3_CONFIG if service == "s3" else _CONFIG)


@cache
def table(name: str) -> Any:
    """A cached DynamoDB ``Table`` resource."""
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)


def reset_clients() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    client.cache_clear()
    table.cache_clear()
