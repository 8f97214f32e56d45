"""AWS limits the code must stay under, and the helpers that keep it there.

A Lambda proxy response is the handler's dict serialised by the runtime; its ``body`` is the
page already serialised as JSON (``\\uXXXX`` escapes, ASCII), so every backslash and quote in
it is escaped a second time. A page of jobs is therefore measured as the runtime will send it,
not by counting jobs: 100 prompts of 10,000 astral characters would take 14 MB.
"""

from __future__ import annotations

import json
from typing import Any

# Synchronous invocation payload limit (request and response), bytes.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# What a list page's jobs may take of the response; the rest is room for the status code,
# headers and next_token.
LIST_RESPONSE_BUDGET_BYTES = LAMBDA_SYNC_PAYLOAD_BYTES - 64 * 1024


def response_bytes(value: Any) -> int:
    """Bytes ``value`` takes inside a Lambda proxy response body (serialised, then escaped again)."""
    body = json.dumps(value, separators=(",", ":"), default=str)
    return len(json.dumps(body)) - 2


def fitting_count(items: list[Any], budget: int = LIST_RESPONSE_BUDGET_BYTES) -> int:
    """How many of ``items`` (at least one) fit in ``budget`` bytes of a proxy response."""
    used = 0
    for count, item in enumerate(items):
        used += response_bytes(item) + 1
        if used > budget and count > 0:
            return count
    return len(items)
