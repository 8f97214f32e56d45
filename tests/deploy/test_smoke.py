"""scripts/smoke.py's checks, each shown to pass on a good stack and fail on the broken one.

AWS is moto (resources from template.yaml's own properties where it matters: the alarm key's
policy); the API is an httpx MockTransport that behaves like the deployed HTTP API.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from local.template import resource
from scripts import smoke

REGION = "us-east-1"
API = "https://abc123.execute-api.us-east-1.amazonaws.com"


class StubbedTarget(smoke.Target):
    stubs: dict[str, Any]

    def client(self, service: str) -> Any:
        return self.stubs.get(service) or super().client(service)


def target(outputs: dict[str, str], parameters: dict[str, str] | None = None) -> smoke.Target:
    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    return smoke.Target({"ApiUrl": API, **outputs}, parameters or {}, session)


def api(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def deployed_api(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/videos":
        if "authorization" not in request.headers or "x-amz-date" not in request.headers:
            return httpx.Response(403, json={"message": "Forbidden"})
        return httpx.Response(200, json={"jobs": [], "next_token": None})
    if request.url.path.startswith("/callbacks/"):
        return httpx.Response(401, json={"error": {"code": "unauthorized"}})
    return httpx.Response(404)


def test_http_checks_pass_on_an_iam_protected_api_and_fail_on_an_open_one():
    good = target({}, {"ClientAuth": "AWS_IAM"})
    with api(deployed_api) as http:
        assert smoke.check_signed_list(good, http).status == "PASS"
        assert smoke.check_unsigned_list(good, http).status == "PASS"
        assert smoke.check_wrong_callback_token(good, http).status == "PASS"

    def open_api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/videos":
            return httpx.Response(200, json={"jobs": [], "next_token": None})
        return httpx.Response(202, json={})  # a callback accepted without a valid token

    with api(open_api) as http:
        assert smoke.check_unsigned_list(good, http).status == "FAIL"
        assert smoke.check_wrong_callback_token(good, http).status == "FAIL"
        assert smoke.check_unsigned_list(target({}, {"ClientAuth": "NONE"}), http).status == "SKIP"


@mock_aws
def test_a_provider_secret_still_holding_the_generated_placeholder_fails():
    manager = boto3.client("secretsmanager", region_name=REGION)
    arns = {}
    for route, output in smoke.PROVIDER_SECRETS.items():
        # As the template's GenerateSecretString makes it: 32 letters and digits.
        arns[output] = manager.create_secret(Name=f"{route}-key", SecretString=json.dumps({"api_key": "Ab3" * 10 + "xy"}))["ARN"]
    manager.put_secret_value(SecretId=arns["TaskApiKeySecretArn"], SecretString=json.dumps({"api_key": "sk-live-1234"}))

    results = {r.check: r.status for r in smoke.check_provider_secrets(target(arns, {"DefaultRoute": "official"}))}

    assert results == {"task API key secret": "PASS", "official API key secret": "FAIL", "legacy API key secret": "WARN"}


def alarm_key_policy() -> str:
    """The template's AlarmTopicKey policy, with the account filled in."""
    policy = resource("AlarmTopicKey")["Properties"]["KeyPolicy"]
    text = json.dumps(policy)
    return text.replace('{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}', '"arn:aws:iam::123456789012:root"')


@mock_aws
def test_the_alarm_topic_check_accepts_the_templates_key_and_refuses_the_aws_managed_one():
    kms = boto3.client("kms", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    key = kms.create_key(Policy=alarm_key_policy())["KeyMetadata"]["KeyId"]
    good = sns.create_topic(Name="alarms", Attributes={"KmsMasterKeyId": key})["TopicArn"]
    sns.subscribe(TopicArn=good, Protocol="email", Endpoint="ops@example.com")
    bad = sns.create_topic(Name="alarms-managed-key", Attributes={"KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]

    passed = {r.check: r.status for r in smoke.check_alarm_topic(target({"AlarmTopicArn": good}))}
    failed = {r.check: r.status for r in smoke.check_alarm_topic(target({"AlarmTopicArn": bad}))}

    assert passed["alarm topic key lets CloudWatch publish"] == "PASS"
    assert failed["alarm topic key"] == "FAIL"
    assert [r.status for r in smoke.check_alarm_topic(target({}))] == ["WARN"]


@mock_aws
def test_a_key_policy_without_cloudwatch_fails():
    kms = boto3.client("kms", region_name=REGION)
    policy = json.loads(alarm_key_policy())
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "CloudWatchAlarmsPublish"]
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="alarms", Attributes={"KmsMasterKeyId": key})["TopicArn"]
    results = {r.check: r for r in smoke.check_alarm_topic(target({"AlarmTopicArn": topic}))}
    assert results["alarm topic key lets CloudWatch publish"].status == "FAIL"


@pytest.mark.parametrize(("configuration", "status"), [({"EventBridgeConfiguration": {}}, "PASS"), ({}, "FAIL")])
def test_the_bucket_check_reads_the_eventbridge_setting(configuration, status):
    s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_notification_configuration", configuration, {"Bucket": "videos"})
        stubbed = StubbedTarget(*vars(target({"VideoBucketName": "videos"})).values())
        stubbed.stubs = {"s3": s3}
        assert smoke.check_bucket_eventbridge(stubbed).status == status


@mock_aws
def test_the_state_machine_check_finds_a_missing_machine():
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:missing"
    assert smoke.check_state_machine(target({"StateMachineArn": arn})).status == "FAIL"
