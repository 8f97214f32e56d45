"""docs/openapi.json: generated from the handlers' resolvers, valid, current, and complete."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from openapi_spec_validator import validate

from tests.unit.test_template import CLIENT_ROUTES

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scripts_openapi", ROOT / "scripts" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_document_is_current():
    # Given the generator run on the handlers as they are now
    fresh = generator()
    text = fresh.render(fresh.build())

    # Then the committed file is exactly its output (else: `make openapi` and commit)
    assert COMMITTED.read_text() == text, "docs/openapi.json is stale: run `make openapi`"


def test_document_is_valid_openapi_with_every_client_route():
    document = json.loads(COMMITTED.read_text())
    validate(document)
    documented = {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path)) for path, ops in document["paths"].items() for method in ops}
    assert documented == {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in CLIENT_ROUTES}


def test_document_shows_the_contract_not_powertools_defaults():
    document = json.loads(COMMITTED.read_text())
    create = document["paths"]["/videos"]["post"]
    assert set(create["responses"]) >= {"202", "400"} and "200" not in create["responses"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CreateVideoRequest"}
    assert document["components"]["schemas"]["CreateVideoRequest"]["properties"]["route"]["anyOf"][0]["enum"] == [
        "task",
        "official",
        "legacy",
    ]
    job = document["components"]["schemas"]["Job"]["properties"]
    assert "store_lease_until" not in job and "expires_at" not in job
    assert "url" in document["components"]["schemas"]["StoredVideo"]["properties"]
