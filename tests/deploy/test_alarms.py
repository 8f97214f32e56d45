"""Alarms that can notify: every alarm goes to the topic, and the topic's key lets CloudWatch publish.

An SNS topic encrypted with the AWS-managed ``alias/aws/sns`` key silently drops every
CloudWatch alarm notification (that key's policy cannot admit cloudwatch.amazonaws.com), so
the topic must use a customer-managed key whose policy does, or no encryption at all.
"""

from __future__ import annotations

from typing import Any

from local.template import resource, resources_of_type, template
from tests.permissions import iam


def key_policy_grants(key: dict[str, Any], service: str) -> list[iam.Grant]:
    """The Allow statements of a key policy whose principal is the AWS service ``service``."""
    found = []
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = services if isinstance(services, list) else [services]
        if statement["Effect"] != "Allow" or service not in services:
            continue
        assert "Condition" not in statement, "a condition here must be one CloudWatch's calls satisfy: check it by hand"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        found += [iam.Grant(service, action, statement["Resource"]) for action in actions]
    return found


def test_the_alarm_topic_uses_a_key_of_this_stack_not_the_aws_managed_one():
    # Given the alarm topic
    topic = resource("AlarmTopic")
    key_id = topic["Properties"].get("KmsMasterKeyId")

    # Then it is encrypted with a key this template creates (an alias/aws/* key cannot admit CloudWatch)
    assert isinstance(key_id, dict) and "Ref" in key_id, f"AlarmTopic uses {key_id!r}, not a key of this stack"
    key = resource(key_id["Ref"])
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"].get("EnableKeyRotation") is True
    # and the key exists whenever the topic does
    assert key.get("Condition") == topic.get("Condition")


def test_the_key_policy_lets_cloudwatch_publish_and_sns_deliver():
    key = resource(resource("AlarmTopic")["Properties"]["KmsMasterKeyId"]["Ref"])
    for service in ("cloudwatch.amazonaws.com", "sns.amazonaws.com"):
        grants = key_policy_grants(key, service)
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            assert iam.allows(grants, iam.Need(action, "*")), f"the key policy does not let {service} {action}"
    # The account keeps control of its key (a key policy without it is unmanageable).
    admins = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if "AWS" in s.get("Principal", {})]
    assert any(s["Action"] == "kms:*" for s in admins)


def test_every_alarm_notifies_the_alarm_topic():
    # Given every alarm of the template (including ones added later)
    alarms = resources_of_type("AWS::CloudWatch::Alarm")
    assert alarms
    topic_condition = resource("AlarmTopic").get("Condition")
    expected = {"Fn::If": [topic_condition, [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}

    # Then each one sends its state changes to the topic whenever the topic exists
    for name, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions") == expected, f"{name} notifies nobody"


def test_no_sns_topic_uses_an_aws_managed_key():
    for name, topic in resources_of_type("AWS::SNS::Topic").items():
        key = topic.get("Properties", {}).get("KmsMasterKeyId")
        assert not (isinstance(key, str) and key.startswith("alias/aws/")), f"{name} uses {key}"
    assert "AlarmTopicArn" in template()["Outputs"]
