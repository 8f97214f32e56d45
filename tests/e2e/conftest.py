"""The local stack for the end-to-end tests, driven over real HTTP.

The stack runs in a child process (``python -m local.stack --profile test``: zero generation
time, short waits) so nothing of it (environment, moto state, patched moto internals) mixes
with the in-process unit tests. Tests reach it only through HTTP: the API, the simulator's
``/_sim`` inspection endpoints, and boto3 pointed explicitly at the moto server. It is
package-scoped (this directory is a package), so it stops when the e2e tests are done; under
pytest-xdist the e2e tests share one worker, so one stack serves them all.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.stack import launch
from tests.e2e.helpers import E2E

E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With pytest-xdist (``--dist loadgroup``), every end-to-end test runs in one worker: one stack."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("e2e"))


@pytest.fixture(scope="package")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    log = Path(os.environ.get("E2E_STACK_LOG") or tmp_path_factory.mktemp("local-stack") / "stack.log")
    with launch("test", log_path=log, timeout=240) as stack:
        ca = stack.info["simulator_ca_file"]
        with (
            httpx.Client(base_url=stack.info["api_url"], timeout=60) as api,
            httpx.Client(base_url=stack.info["simulator_url"], timeout=30, verify=ssl.create_default_context(cafile=ca)) as sim,
        ):
            yield E2E(stack=stack, api=api, sim=sim)
