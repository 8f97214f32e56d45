"""Shared fixtures: moto AWS built from template.yaml, the real handlers, sample events."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local import inprocess  # noqa: E402

inprocess.use_env()

from moto import mock_aws  # noqa: E402

from local.inprocess import (  # noqa: E402
    API_KEY,
    CALLBACK_KEYS,
    FakeContext,
    create_aws_resources,
    invoke,
    load_event,
    load_handler,
    mp4_bytes,
)
from videogen import context as videogen_context  # noqa: E402

# Every AWS call a handler makes is checked against its role from template.yaml.
pytest_plugins = ["tests.permissions.plugin"]

__all__ = [
    "API_KEY",
    "CALLBACK_KEYS",
    "ROOT",
    "FakeContext",
    "create_aws_resources",
    "invoke",
    "load_event",
    "load_handler",
    "mp4_bytes",
]


@pytest.fixture
def aws() -> Iterator[None]:
    """moto AWS with the project's resources; caches reset around each test."""
    videogen_context.reset()
    with mock_aws(config=inprocess.MOTO_CONFIG):
        create_aws_resources()
        yield
    videogen_context.reset()


@pytest.fixture
def ctx(aws: None) -> videogen_context.Context:
    return videogen_context.get_context()


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()
