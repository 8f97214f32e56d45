"""Make moto's DynamoDB apply each request atomically, as DynamoDB does (in-process and server mode).

DynamoDB evaluates a condition and applies the write of one request as a single atomic step;
that is what the repository's conditional writes, the store lease and Powertools idempotency
rely on. moto emulates a request in the calling thread with no lock, so under thread
concurrency two conditional writes can both pass their check, which real DynamoDB never
allows. Tests (and the load script) that run requests concurrently on in-process moto
serialize its DynamoDB request handling with this, and so test our code, not moto's races.
The local stack's moto server holds it for its whole life (its requests arrive on threads too).
``DynamoHandler.call_action`` is moto's own dispatch (moto is pinned in requirements-dev.txt).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_LOCK = threading.RLock()


@contextmanager
def atomic_dynamodb_requests() -> Iterator[None]:
    """While active, moto handles one DynamoDB request at a time."""
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoHandler.call_action = original  # type: ignore[method-assign]
