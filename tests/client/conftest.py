"""The client's end-to-end tests run against the same local stack as tests/e2e (its fixture)."""

from tests.e2e.conftest import e2e

__all__ = ["e2e"]
