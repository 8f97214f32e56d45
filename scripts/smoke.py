"""First-deploy smoke test that spends nothing: `make smoke STACK=name`.

Reads the stack's outputs (and parameters) from CloudFormation and checks, without starting a
paid job:

- a SigV4-signed ``GET /videos?limit=1`` answers 200 (the caller's IAM reaches the API and
  the status function's role can query the table);
- an unsigned ``GET /videos`` answers 403 (client routes are IAM-protected; skipped when the
  stack was deployed with ``ClientAuth=NONE``);
- a callback with a wrong token answers 401 (the route is public, the token is checked);
- every provider API key secret holds a key someone set, not the placeholder the template
  generated (a failure for the default route's secret, a warning for the others);
- the job state machine exists and is active; the bucket sends events to EventBridge;
- the alarm topic can take CloudWatch's notifications: encrypted with a key whose policy lets
  cloudwatch.amazonaws.com use it (never alias/aws/sns), with a confirmed subscription, and
  every alarm of the stack notifies it.

``--outputs file.json`` takes the outputs from a file instead (``{"Outputs": {...},
"Parameters": {...}}``): the end-to-end tests run this script against the local stack that way,
with ``--endpoint-url`` pointing boto3 at its moto server.

Exit status 0 when nothing failed (warnings and skips allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

PROVIDER_SECRETS = {"task": "TaskApiKeySecretArn", "official": "OfficialApiKeySecretArn", "legacy": "LegacyApiKeySecretArn"}
# What the template's GenerateSecretString makes: 32 letters and digits.
PLACEHOLDER = re.compile(r"^[A-Za-z0-9]{32}$")


@dataclass
class Result:
    check: str
    status: str  # PASS, FAIL, WARN, SKIP
    detail: str = ""


@dataclass
class Target:
    outputs: dict[str, str]
    parameters: dict[str, str]
    session: boto3.Session
    endpoint_url: str | None = None
    stack: str | None = None

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    @property
    def api(self) -> str:
        return self.outputs["ApiUrl"].rstrip("/")


def load_target(args: argparse.Namespace) -> Target:
    session = boto3.Session(region_name=args.region) if args.region else boto3.Session()
    if args.outputs:
        data = json.loads(Path(args.outputs).read_text())
        return Target(data["Outputs"], data.get("Parameters", {}), session, args.endpoint_url)
    stack = session.client("cloudformation", endpoint_url=args.endpoint_url).describe_stacks(StackName=args.stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return Target(outputs, parameters, session, args.endpoint_url, args.stack)


# ---- HTTP ------------------------------------------------------------------------------------


def signed_headers(target: Target, method: str, url: str) -> dict[str, str]:
    credentials = target.session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials to sign with")
    request = AWSRequest(method=method, url=url)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", target.session.region_name or "us-east-1").add_auth(request)
    return dict(request.headers.items())


def check_signed_list(target: Target, http: httpx.Client) -> Result:
    url = f"{target.api}/videos?limit=1"
    answer = http.get(url, headers=signed_headers(target, "GET", url))
    if answer.status_code == 200 and "jobs" in answer.json():
        return Result("signed GET /videos", "PASS", "200")
    return Result("signed GET /videos", "FAIL", f"{answer.status_code}: {answer.text[:200]}")


def check_unsigned_list(target: Target, http: httpx.Client) -> Result:
    if target.parameters.get("ClientAuth", "AWS_IAM") != "AWS_IAM":
        return Result("unsigned GET /videos is refused", "SKIP", "ClientAuth is not AWS_IAM")
    answer = http.get(f"{target.api}/videos?limit=1")
    if answer.status_code == 403:
        return Result("unsigned GET /videos is refused", "PASS", "403")
    return Result("unsigned GET /videos is refused", "FAIL", f"{answer.status_code}: client routes answer without a signature")


def check_wrong_callback_token(target: Target, http: httpx.Client) -> Result:
    # A job id nobody has and a token nobody signed: nothing is looked up at a provider.
    url = f"{target.api}/callbacks/{uuid.uuid4().hex}"
    body = {"code": 200, "msg": "success", "data": {"taskId": "smoke-test", "state": "fail", "failMsg": "smoke test"}}
    answer = http.post(url, params={"token": "smoke-test-wrong-token"}, json=body)
    if answer.status_code == 401:
        return Result("callback with a wrong token", "PASS", "401")
    return Result("callback with a wrong token", "FAIL", f"{answer.status_code}: {answer.text[:200]}")


# ---- AWS resources ---------------------------------------------------------------------------


def check_provider_secrets(target: Target) -> list[Result]:
    manager = target.client("secretsmanager")
    default_route = target.parameters.get("DefaultRoute", "task")
    results = []
    for route, output in PROVIDER_SECRETS.items():
        name = f"{route} API key secret"
        arn = target.outputs.get(output)
        if not arn:
            results.append(Result(name, "FAIL", f"output {output} missing"))
            continue
        severity = "FAIL" if route == default_route else "WARN"
        try:
            value = json.loads(manager.get_secret_value(SecretId=arn)["SecretString"])
            described = manager.describe_secret(SecretId=arn)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results.append(Result(name, "FAIL", f"{type(exc).__name__}: {exc}"))
            continue
        key = value.get("api_key") if isinstance(value, dict) else None
        created, changed = described.get("CreatedDate"), described.get("LastChangedDate")
        never_changed = created is None or changed is None or changed - created < timedelta(minutes=5)
        if not key:
            results.append(Result(name, severity, 'no "api_key" in the secret'))
        elif PLACEHOLDER.match(key) and never_changed:
            results.append(Result(name, severity, 'still the generated placeholder: put {"api_key": "..."} in the secret'))
        else:
            results.append(Result(name, "PASS", "set"))
    return results


def check_state_machine(target: Target) -> Result:
    arn = target.outputs.get("StateMachineArn", "")
    try:
        described = target.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    except Exception as exc:  # noqa: BLE001
        return Result("job state machine", "FAIL", f"{type(exc).__name__}: {exc}")
    status = described.get("status", "ACTIVE")
    return Result("job state machine", "PASS" if status == "ACTIVE" else "FAIL", f"{described['name']} {status}")


def check_bucket_eventbridge(target: Target) -> Result:
    bucket = target.outputs.get("VideoBucketName", "")
    config = target.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    if "EventBridgeConfiguration" in config:
        return Result("bucket sends events to EventBridge", "PASS", bucket)
    return Result("bucket sends events to EventBridge", "FAIL", f"{bucket}: EventBridge notifications are off")


def statement_allows(policy: dict[str, Any], service: str, action: str) -> bool:
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = services if isinstance(services, list) else [services]
        actions = statement.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        if (
            statement.get("Effect") == "Allow"
            and service in services
            and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)
        ):
            return True
    return False


def check_alarm_topic(target: Target) -> list[Result]:
    topic = target.outputs.get("AlarmTopicArn")
    if not topic:
        return [Result("alarm topic", "WARN", "no AlarmEmail was given: the alarms notify nobody")]
    results = []
    attributes = target.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]
    key = attributes.get("KmsMasterKeyId", "")
    if not key:
        results.append(Result("alarm topic key", "PASS", "unencrypted topic"))
    elif key.startswith("alias/aws/"):
        results.append(Result("alarm topic key", "FAIL", f"{key}: CloudWatch cannot use an AWS-managed key"))
    else:
        policy = json.loads(target.client("kms").get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        missing = [
            action
            for action in ("kms:Decrypt", "kms:GenerateDataKey")
            if not statement_allows(policy, "cloudwatch.amazonaws.com", action)
        ]
        status = "FAIL" if missing else "PASS"
        results.append(Result("alarm topic key lets CloudWatch publish", status, f"missing {missing}" if missing else key))
    subscriptions = target.client("sns").list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
    confirmed = [s for s in subscriptions if s.get("SubscriptionArn", "").startswith("arn:")]
    if confirmed:
        results.append(Result("alarm topic subscription", "PASS", f"{len(confirmed)} confirmed"))
    else:
        results.append(Result("alarm topic subscription", "WARN", "no confirmed subscription: confirm the e-mail AWS sent"))
    if target.stack:
        resources = target.client("cloudformation").describe_stack_resources(StackName=target.stack)["StackResources"]
        names = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::CloudWatch::Alarm"]
        alarms = target.client("cloudwatch").describe_alarms(AlarmNames=names[:100])["MetricAlarms"] if names else []
        silent = [a["AlarmName"] for a in alarms if topic not in a.get("AlarmActions", [])]
        status = "FAIL" if silent else "PASS"
        results.append(Result("every alarm notifies the topic", status, ", ".join(silent) or f"{len(alarms)} alarms"))
    return results


def run(target: Target, http: httpx.Client, skip: frozenset[str] = frozenset()) -> list[Result]:
    checks: list[Callable[[], Result | list[Result]]] = [
        lambda: check_signed_list(target, http),
        lambda: check_unsigned_list(target, http),
        lambda: check_wrong_callback_token(target, http),
        lambda: check_provider_secrets(target),
        lambda: check_state_machine(target),
        lambda: check_bucket_eventbridge(target),
        lambda: check_alarm_topic(target),
    ]
    results: list[Result] = []
    for check in checks:
        try:
            outcome = check()
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            outcome = Result(getattr(check, "__name__", "check"), "FAIL", f"{type(exc).__name__}: {exc}")
        results += outcome if isinstance(outcome, list) else [outcome]
    return [Result(r.check, "SKIP", "skipped by --skip") if r.check in skip else r for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke-test a deployed videogen stack without starting a paid job.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="CloudFormation stack name")
    source.add_argument("--outputs", help='JSON file {"Outputs": {...}, "Parameters": {...}} instead of a stack')
    parser.add_argument("--region", help="AWS region (default: the configured one)")
    parser.add_argument("--endpoint-url", help="AWS endpoint (the local stack's moto server)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--skip", action="append", default=[], metavar="CHECK", help="report this check as skipped")
    args = parser.parse_args(argv)
    target = load_target(args)
    with httpx.Client(timeout=30) as http:
        results = run(target, http, frozenset(args.skip))
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    else:
        for result in results:
            print(f"{result.status:<4}  {result.check}: {result.detail}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
