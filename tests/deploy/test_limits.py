"""AWS limits as tests: response and request payloads, environment size, time budgets.

Each figure is computed from template.yaml and Settings (tests/deploy/limits.py), so a new
function, parameter or setting is covered without editing this file.
"""

from __future__ import annotations

import json
import re

import pytest

from local.template import ROOT
from tests.conftest import invoke, load_event
from tests.deploy import limits
from videogen.limits import LAMBDA_SYNC_PAYLOAD_BYTES, fitting_count, response_bytes
from videogen.models import Job
from videogen.operations.jobs import view
from videogen.settings import Settings

# Functions whose worst-case provider time is over their timeout today (issue 10 fixes the
# budgets). strict: the day one fits, this test fails until the name is removed here.


def list_event(**params: str) -> dict:
    event = load_event("status-list")
    event["queryStringParameters"] = params
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in params.items())
    return event


def worst_job(index: int) -> Job:
    # Control characters: 1 byte each in DynamoDB (so a 1 MB query page still holds 100 such
    # jobs) but 6 in the JSON body and 7 in the Lambda response: the worst ratio there is.
    return Job.new(
        route="task", model="sora-2", prompt="\x01" * limits.MAX_PROMPT_CHARS, seconds=10, metadata={"k": "\x02" * 300}
    )


def test_a_list_page_fits_the_lambda_response_limit_with_worst_case_prompts(ctx, context):
    # Given 100 jobs whose prompts are 10,000 control characters
    created = []
    for index in range(100):
        job = worst_job(index).model_copy(update={"created_at": f"2026-12-01T00:00:{index:02d}.000000Z"})
        ctx.repo.create(job)
        created.append(job.id)
    # (one DynamoDB query page, at most 1 MB, holds more of them than 6 MB of response can)
    stored, _ = ctx.repo.list(limit=100)
    assert sum(response_bytes(view(ctx, job)) for job in stored) > LAMBDA_SYNC_PAYLOAD_BYTES

    # When a client lists them 100 at a time, following next_token
    seen: list[str] = []
    sizes, counts = [], []
    params = {"limit": "100"}
    while True:
        response = invoke("status", list_event(**params), context)
        assert response["statusCode"] == 200
        del response["json"]
        sizes.append(len(json.dumps(response).encode()))
        page = json.loads(response["body"])
        seen += [job["id"] for job in page["jobs"]]
        counts.append(len(page["jobs"]))
        if not page["next_token"]:
            break
        params = {"limit": "100", "next_token": page["next_token"]}

    # Then every page (as the Lambda runtime serialises it) is under 6 MB, the byte cap cut
    # the first one, and the pages together hold every job once, newest first
    assert max(sizes) < LAMBDA_SYNC_PAYLOAD_BYTES, sizes
    assert counts[0] < len(stored), counts
    assert seen == created[::-1]


def test_the_byte_cap_measures_what_the_runtime_sends():
    # The helper's figure equals the size of the body string inside the runtime's JSON.
    view = {"prompt": limits.WORST_CHAR * 3 + '\x01"\\', "n": 1}
    body = json.dumps(view, separators=(",", ":"))
    assert response_bytes(view) == len(json.dumps({"body": body})) - len('{"body": ""}')
    # At least one item is always kept, however big.
    assert fitting_count([{"x": "y" * 100}], budget=10) == 1
    assert fitting_count([{"x": "y"}] * 5, budget=10**6) == 5


def test_the_largest_submit_fits_the_sync_payload_limit_even_base64_encoded():
    # Given the largest POST /videos body validation accepts
    settings = Settings()
    sample = load_event("submit")
    figures = limits.submit_event_bytes(settings, sample)

    # Then its event fits in 6 MB, also when API Gateway base64-encodes a non-JSON content type
    assert figures["event"] < LAMBDA_SYNC_PAYLOAD_BYTES, figures
    assert figures["event_base64"] < LAMBDA_SYNC_PAYLOAD_BYTES, figures
    assert settings.max_inline_image_bytes <= limits.max_inline_image_bytes_that_fit(sample)


def test_the_inline_image_cap_is_what_submit_enforces(ctx):
    from videogen.catalog import model_spec

    # The catalog's per-model image limit is larger; the inline cap must be the binding one.
    spec = model_spec(ctx.settings, "official", "sora-2")
    assert spec.image is not None and spec.image.max_bytes > ctx.settings.max_inline_image_bytes


@pytest.mark.parametrize("function", limits.functions())
def test_every_environment_fits_4_kb_with_every_value_at_its_longest(function):
    # Given every parameter at its MaxLength (CatalogJson included) and the longest names
    # CloudFormation can generate
    size = limits.environment_bytes(function)

    # Then the function's environment stays under Lambda's 4 KB
    assert size < limits.ENVIRONMENT_LIMIT_BYTES, f"{function}: {size} bytes"


def test_catalog_json_has_a_documented_maximum():
    spec = limits.template()["Parameters"]["CatalogJson"]
    assert "MaxLength" in spec
    docs = (ROOT / "docs" / "catalog.md").read_text()
    assert f"{int(spec['MaxLength']):,}" in docs, "docs/catalog.md must state CatalogJson's MaxLength"


def provider_calling_functions() -> list[str]:
    """Functions whose policies name a provider API key secret, i.e. that call a provider."""
    calling = []
    for function in limits.functions():
        policies = json.dumps(limits.resource(function)["Properties"].get("Policies", []))
        if re.search(r'"(Ref|Fn::GetAtt)": \[?"\w*ApiKeySecret"', policies) or re.search(r"\$\{\w*ApiKeySecret\}", policies):
            calling.append(function)
    return calling


# Provider time against function timeouts: every provider call takes its timeouts and its
# retries from a deadline derived from the Lambda's time left (issue 10), so no static sum of
# attempts x timeouts applies; tests/hardening/test_money_and_owners.py checks the deadlines
# reach the HTTP requests of submit, callback and poll.
