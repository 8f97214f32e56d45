"""template.yaml's events-out resources against the contract and the house rules."""

from __future__ import annotations

import json
from typing import Any

from local.outbox import mapping_of
from tests.template import resource, template

NEW_FUNCTIONS = ("NotifyFunction", "DeliverFunction", "ProbeFunction", "WebhooksFunction")


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template()["Resources"].items() if res["Type"] == kind}


def test_every_new_function_has_a_log_group_with_retention() -> None:
    groups = {
        json.dumps(res["Properties"]["LogGroupName"]): res["Properties"].get("RetentionInDays")
        for res in _resources("AWS::Logs::LogGroup").values()
        if "LogGroupName" in res["Properties"]
    }
    for name in NEW_FUNCTIONS:
        key = json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"})
        assert groups.get(key), f"{name} has no log group with a retention"


def test_every_dead_letter_queue_has_an_alarm() -> None:
    watched = {
        res["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for res in _resources("AWS::CloudWatch::Alarm").values()
        if res["Properties"]["Namespace"] == "AWS/SQS"
    }
    assert watched == {"WebhookDeadLetterQueue", "NotifyDeadLetterQueue", "ProbeDeadLetterQueue"}
    # and each is where its failures go
    assert resource("WebhookQueue")["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]
    }
    assert mapping_of("NotifyFunction", "DynamoDB").on_failure == {"Fn::GetAtt": ["NotifyDeadLetterQueue", "Arn"]}


def test_the_contract_parameters_and_the_stream() -> None:
    params = template()["Parameters"]
    assert params["EventBusName"]["Default"] == "default"
    assert params["WebhookRetrySchedule"]["Default"] == "5,300,1800,7200,18000,36000,36000"
    assert resource("JobsTable")["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    notify = mapping_of("NotifyFunction", "DynamoDB")
    event = resource("NotifyFunction")["Properties"]["Events"]["JobChanges"]["Properties"]
    assert event["BisectBatchOnFunctionError"] is True and event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert notify.filters and all(f["dynamodb"]["NewImage"]["status"] for f in notify.filters)
    deliver = resource("DeliverFunction")["Properties"]["Events"]["Deliveries"]["Properties"]
    assert deliver["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_least_privilege_no_crud_policies_and_only_the_webhook_functions_read_the_signing_key() -> None:
    for name in NEW_FUNCTIONS:
        policies = resource(name)["Properties"].get("Policies", [])
        assert not any("DynamoDBCrudPolicy" in p or "S3CrudPolicy" in p for p in policies), name
    readers = {
        name
        for name, res in _resources("AWS::Serverless::Function").items()
        for p in res["Properties"].get("Policies", [])
        if p.get("AWSSecretsManagerGetSecretValuePolicy", {}).get("SecretArn") == {"Ref": "WebhookSigningSecret"}
    }
    assert readers == {"DeliverFunction", "WebhooksFunction"}
    # The probe writes posters and nothing else in the bucket
    statements = resource("ProbeFunction")["Properties"]["Policies"][0]["Statement"]
    puts = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert [s["Resource"] for s in puts] == [{"Fn::Sub": "${VideoBucket.Arn}/posters/*"}]
