"""Client idempotency for ``POST /videos``: the ``Idempotency-Key`` header, via Powertools.

A request carrying a key runs through Powertools' idempotency utility (``idempotent_function``
with a ``DynamoDBPersistenceLayer`` on ``IDEMPOTENCY_TABLE``). The record is keyed by the
caller and the header; a SHA-256 of the request body is its payload-validation value:

* same key, same body: the first answer again (one job, one provider call), with the header
  ``Idempotent-Replayed: true``;
* same key, another body: 422 ``idempotency_key_reused``;
* same key while the first request is still running: 409 ``idempotency_in_progress``.

A request that raised (a 4xx validation error, a provider failure) is not remembered, so the
client may retry it with the same key. Records expire after ``IDEMPOTENCY_EXPIRES_SECONDS``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from . import aws
from .errors import Conflict, InvalidRequest, VideogenError
from .models import CreateVideoRequest
from .settings import Settings

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
KEY_PREFIX = "videogen-submit"


class IdempotencyKeyReused(VideogenError):
    """The key was used before with a different request body."""

    status = 422
    code = "idempotency_key_reused"


def body_hash(request: CreateVideoRequest) -> str:
    """SHA-256 of the request as the client sent it (canonical JSON: key order and spacing do not count)."""
    canonical = json.dumps(request.model_dump(mode="json", exclude_unset=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def checked_key(value: str | None) -> str | None:
    """The header's value, or ``None`` when absent; a malformed key is a 400."""
    if value is None:
        return None
    if not KEY_PATTERN.match(value):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 visible ASCII characters", field=HEADER)
    return value


Answer = dict[str, Any]


@lru_cache(maxsize=4)
def _runner(table: str, expires_seconds: int) -> tuple[IdempotencyConfig, Callable[..., Answer]]:
    """The Powertools config and wrapped function, built once per process and table."""
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="body_sha256",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_seconds,
        hash_function="sha256",
        response_hook=_mark_replayed,
    )
    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=aws.client("dynamodb"))
    wrapped = idempotent_function(
        _run, data_keyword_argument="idempotency", persistence_store=persistence, config=config, key_prefix=KEY_PREFIX
    )
    return config, wrapped


def once(
    first: Callable[[], Answer],
    *,
    settings: Settings,
    request: CreateVideoRequest,
    key: str,
    caller: str,
    lambda_context: Any = None,
) -> Answer:
    """Run ``first`` once per (caller, key): see the module docstring for the rules."""
    checked = checked_key(key)
    assert checked is not None
    config, wrapped = _runner(settings.idempotency_table, settings.idempotency_expires_seconds)
    if lambda_context is not None:
        # An in-flight record expires with this invocation, so a crashed submit can be retried.
        config.register_lambda_context(lambda_context)
    try:
        return wrapped(first=first, idempotency={"key": f"{caller} {checked}", "body_sha256": body_hash(request)})
    except IdempotencyValidationError as exc:
        raise IdempotencyKeyReused(
            f"{HEADER} was already used with a different request body; use a new key for a new request", field=HEADER
        ) from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise Conflict(
            f"a request with this {HEADER} is still being processed; retry shortly", code="idempotency_in_progress", field=HEADER
        ) from exc


def _run(*, first: Callable[[], Answer], idempotency: dict[str, str]) -> Answer:
    return first()


def _mark_replayed(response: Any, idempotent_data: Any) -> Any:
    return {**response, "headers": {**response.get("headers", {}), REPLAYED_HEADER: "true"}}
