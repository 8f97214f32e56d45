"""Generate docs/deploy.md's tables from what the tests measure: `make permissions`.

- the permission table: every function's role as `sam` creates it (tests/permissions/iam.py)
  and which of its grants the recorded AWS calls used (``--permissions``: the JSON the
  permission plugin writes when VIDEOGEN_PERMISSIONS_REPORT is set);
- the limits table: the worst cases tests/deploy/limits.py computes, and a list page measured
  on moto with 100 worst-case jobs;
- the artefact table: scripts/artifact_sizes.py over .aws-sam/build, when something is built.

``--write docs/deploy.md`` replaces the text between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` markers; without it the tables are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "videogen")]


def permission_table(report: dict[str, object] | None) -> str:
    from tests.permissions import iam

    template = iam.translated_template()
    used: dict[str, list[list[str]]] = report.get("used", {}) if report else {}  # type: ignore[assignment]
    lines = [
        "| function | actions | resource | used by the recorded calls |",
        "|---|---|---|---|",
    ]
    for function in sorted(iam.lambda_functions(template)):
        by_resource: dict[str, list[iam.Grant]] = defaultdict(list)
        for grant in iam.symbolic_grants(template, function):
            if not grant.managed:
                by_resource[grant.resource].append(grant)
        pairs = [iam.Need(a, r) for a, r in used.get(function, [])]
        for resource, grants in by_resource.items():
            actions = ", ".join(f"`{g.action}`" for g in grants)
            hit = sorted({g.action for g in grants for need in pairs if g.matches(need)})
            note = ", ".join(f"`{a}`" for a in hit) if hit else ("none" if report else "(not recorded)")
            lines.append(f"| {function} | {actions} | `{resource}` | {note} |")
        lines.append(
            f"| {function} | `logs:CreateLogGroup`, `logs:CreateLogStream`, `logs:PutLogEvents`, "
            "`xray:Put*`, `xray:GetSampling*` "
            "| `*` (AWS managed: AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess) | runtime |"
        )
    return "\n".join(lines)


def measured_list_page() -> dict[str, int]:
    """A GET /videos?limit=100 page over 100 worst-case jobs, on moto, through the status handler."""
    from moto import mock_aws

    import tests.conftest as harness  # sets the test environment (moto credentials, names)
    from tests.deploy.test_limits import list_event, worst_job
    from videogen import context
    from videogen.limits import response_bytes
    from videogen.operations.jobs import view

    context.reset()
    with mock_aws():
        harness.create_aws_resources()
        ctx = context.get_context()
        jobs = []
        for index in range(100):
            job = worst_job(index).model_copy(update={"created_at": f"2026-12-01T00:00:{index:02d}.000000Z"})
            ctx.repo.create(job)
            jobs.append(job)
        response = harness.invoke("status", list_event(limit="100"), harness.FakeContext())
        response.pop("json", None)
        page = json.loads(response["body"])
        stored, _ = ctx.repo.list(limit=100)
        uncapped = sum(response_bytes(view(ctx, job)) + 1 for job in stored)
    context.reset()
    return {
        "jobs": len(page["jobs"]),
        "response": len(json.dumps(response).encode()),
        "stored": len(stored),
        "uncapped": uncapped,
    }


def limits_table() -> str:
    from tests.deploy import limits
    from videogen.limits import LAMBDA_SYNC_PAYLOAD_BYTES
    from videogen.settings import Settings

    sample = json.loads((ROOT / "events" / "submit.json").read_text())
    settings = Settings()
    submit = limits.submit_event_bytes(settings, sample)
    page = measured_list_page()
    limit = f"{LAMBDA_SYNC_PAYLOAD_BYTES:,}"
    lines = [
        "| limit | AWS figure | worst case here | how |",
        "|---|---:|---:|---|",
        f"| `GET /videos?limit=100` response, 100 jobs with prompts of 10,000 control characters "
        f"| {limit} B | {page['response']:,} B: {page['jobs']} jobs on the first page "
        f"(the {page['stored']} of DynamoDB's 1 MB page "
        f"would take {page['uncapped']:,} B) "
        "| page capped by bytes (`videogen/limits.py`), measured on moto |",
        f"| largest `POST /videos` event (3 MB inline image, 10,000 astral characters, 2 KB metadata), JSON body "
        f"| {limit} B | {submit['event']:,} B | computed (`tests/deploy/limits.py`) |",
        f"| the same, body base64-encoded by API Gateway | {limit} B | {submit['event_base64']:,} B "
        f"| inline images capped at {settings.max_inline_image_bytes:,} B; the bound is "
        f"{limits.max_inline_image_bytes_that_fit(sample):,} B |",
    ]
    for function in limits.functions():
        lines.append(
            f"| {function} environment, every parameter at its `MaxLength` (CatalogJson 1,024 B), longest generated names "
            f"| {limits.ENVIRONMENT_LIMIT_BYTES:,} B | {limits.environment_bytes(function):,} B | computed |"
        )
    from tests.deploy.test_limits import provider_calling_functions

    for function in provider_calling_functions():
        settings = limits.function_settings(function)
        worst = limits.worst_provider_seconds(settings)
        timeout = limits.timeout_of(function)
        verdict = "fits" if worst < timeout else "**over: issue 10**"
        lines.append(
            f"| {function}: one provider call at its worst ({settings.submit_max_attempts} attempts x "
            f"({settings.connect_timeout_seconds:g} + {settings.read_timeout_seconds:g} s) + backoffs) "
            f"| Timeout {timeout} s | {worst:g} s | {verdict} |"
        )
    return "\n".join(lines)


def artifact_table() -> str:
    from scripts.artifact_sizes import markdown, measure

    build = ROOT / ".aws-sam" / "build"
    if not (build / "template.yaml").is_file():
        return "(nothing built: run `make build`, then `make permissions`)"
    report = measure(build)
    problems = "".join(f"\n\nProblem: {p}." for p in report.problems)
    return markdown(report) + problems


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(\n<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {name}:begin/end --> markers in the file")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--permissions", type=Path, help="the permission plugin's JSON report")
    parser.add_argument("--write", type=Path, help="replace the marked sections of this file")
    args = parser.parse_args()
    report = json.loads(args.permissions.read_text()) if args.permissions and args.permissions.is_file() else None
    sections = {"permissions": permission_table(report), "limits": limits_table(), "artifacts": artifact_table()}
    if args.write:
        text = args.write.read_text()
        for name, body in sections.items():
            text = replace_section(text, name, body)
        args.write.write_text(text)
    else:
        for name, body in sections.items():
            print(f"## {name}\n\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
