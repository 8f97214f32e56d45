"""The built artefacts (`make build`) against Lambda's limits: scripts/artifact_sizes.py.

Skipped when nothing is built (`make test` runs before `make build` in CI; `make build` runs
the same check itself and fails on a problem).
"""

from __future__ import annotations

import pytest

from local.template import ROOT
from scripts.artifact_sizes import UNZIPPED_LIMIT_BYTES, measure

BUILD = ROOT / ".aws-sam" / "build"
pytestmark = pytest.mark.skipif(not (BUILD / "template.yaml").is_file(), reason="nothing built: run `make build`")


def test_every_function_with_its_layers_is_under_the_unzipped_limit():
    report = measure(BUILD)
    assert report.functions and report.layers
    for name, (_code, with_layers) in report.functions.items():
        assert with_layers < UNZIPPED_LIMIT_BYTES, name


def test_no_layer_ships_its_own_boto3_or_botocore():
    problems = [p for p in measure(BUILD).problems if "ships its own" in p]
    assert problems == []
