"""The permission check itself: operation table, intrinsics, wildcard evaluation, recording."""

from __future__ import annotations

import json

import pytest

from local.aws_calls import Call, read_new
from tests.conftest import invoke
from tests.permissions import iam, plugin
from tests.unit.test_status import get_event
from videogen.models import Job

REGION = "us-east-1"
OBJECT = "arn:aws:s3:::videos/videos/job.mp4"


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("s3", "CreateMultipartUpload", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:PutObject", OBJECT)]),
        ("s3", "UploadPart", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:PutObject", OBJECT)]),
        ("s3", "CompleteMultipartUpload", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:PutObject", OBJECT)]),
        ("s3", "AbortMultipartUpload", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:AbortMultipartUpload", OBJECT)]),
        ("s3", "GetObject", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:GetObject", OBJECT)]),
        ("s3", "HeadObject", {"Bucket": "videos", "Key": "videos/job.mp4"}, [("s3:GetObject", OBJECT)]),
        ("s3", "ListObjectsV2", {"Bucket": "videos"}, [("s3:ListBucket", "arn:aws:s3:::videos")]),
        (
            "s3",
            "CopyObject",
            {"Bucket": "videos", "Key": "videos/job.mp4", "CopySource": {"Bucket": "in", "Key": "a"}},
            [("s3:PutObject", OBJECT), ("s3:GetObject", "arn:aws:s3:::in/a")],
        ),
        (
            "dynamodb",
            "Query",
            {"TableName": "jobs", "IndexName": "by_created"},
            [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/index/by_created")],
        ),
        ("dynamodb", "Query", {"TableName": "jobs"}, [("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs")]),
        (
            "dynamodb",
            "UpdateItem",
            {"TableName": "jobs"},
            [("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs")],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"Put": {"TableName": "a"}}, {"Update": {"TableName": "b"}}]},
            [
                ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/a"),
                ("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/b"),
            ],
        ),
        (
            "secretsmanager",
            "GetSecretValue",
            {"SecretId": "videogen/keys"},
            [("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/keys-AbCdEf")],
        ),
        (
            "stepfunctions",
            "StartExecution",
            {"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:jobs"},
            [("states:StartExecution", "arn:aws:states:us-east-1:123456789012:stateMachine:jobs")],
        ),
        (
            "sqs",
            "SendMessageBatch",
            {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries"},
            [("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:deliveries")],
        ),
        (
            "events",
            "PutEvents",
            {"Entries": [{"EventBusName": "videogen"}, {}]},
            [
                ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default"),
                ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/videogen"),
            ],
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "/videogen/catalog"},
            [("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/videogen/catalog")],
        ),
    ],
)
def test_operation_table(service, operation, params, expected):
    needs = iam.required(service, operation, params, REGION)
    assert [(n.action, n.resource) for n in needs] == expected


def test_an_operation_missing_from_the_table_is_an_error_not_a_pass():
    with pytest.raises(iam.UnmappedOperation):
        iam.required("s3", "PutBucketPolicy", {"Bucket": "videos"}, REGION)
    with pytest.raises(iam.UnmappedOperation):
        iam.required("kinesis", "PutRecord", {}, REGION)


def test_wildcards_in_actions_and_resources():
    grant = iam.Grant("F", "s3:Put*", "arn:aws:s3:::videos/videos/*")
    assert grant.matches(iam.Need("s3:PutObject", OBJECT))
    assert grant.matches(iam.Need("S3:putobject", OBJECT))  # actions are case-insensitive
    assert not grant.matches(iam.Need("s3:GetObject", OBJECT))
    assert not grant.matches(iam.Need("s3:PutObject", "arn:aws:s3:::videos/inputs/x.png"))
    assert not grant.matches(iam.Need("s3:PutObject", "arn:aws:s3:::VIDEOS/videos/job.mp4"))  # resources are not
    assert iam.Grant("F", "dynamodb:GetItem", "arn:aws:dynamodb:*:*:table/jobs").matches(
        iam.Need("dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs")
    )
    # A table grant does not cover its indexes, and an index grant not the table.
    table = iam.Grant("F", "dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs")
    assert not table.matches(iam.Need("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/index/by_created"))


def test_intrinsics_resolve_against_the_names_the_functions_saw():
    template = {
        "Parameters": {"Prefix": {"Type": "String", "Default": "videos/"}},
        "Conditions": {"On": {"Fn::Equals": [{"Ref": "Prefix"}, "videos/"]}},
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Machine": {"Type": "AWS::StepFunctions::StateMachine"},
            "Secret": {"Type": "AWS::SecretsManager::Secret"},
        },
    }
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:jobs-1"
    resolver = iam.Resolver(template, names={"Bucket": "videos", "Machine": machine, "Secret": "videogen/keys"})
    assert resolver.resolve({"Fn::Sub": "${Bucket.Arn}/${Prefix}*"}) == "arn:aws:s3:::videos/videos/*"
    assert resolver.resolve({"Fn::GetAtt": ["Machine", "Name"]}) == "jobs-1"
    assert resolver.resolve({"Fn::Sub": ["x:${n}", {"n": {"Ref": "Secret"}}]}).endswith(":secret:videogen/keys-AbCdEf")
    assert resolver.resolve({"Fn::If": ["On", "yes", "no"]}) == "yes"
    assert resolver.resolve([{"Ref": "AWS::NoValue"}, {"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]}]) == ["a-us-east-1"]


def test_every_function_role_translates_and_resolves():
    # Given the template as `sam` translates it
    template = iam.translated_template()
    functions = iam.lambda_functions(template)
    resolver = iam.Resolver(template)

    # Then every function (whoever added it) has a role whose statements this check can evaluate
    assert functions.keys() >= {"SubmitFunction", "StatusFunction", "CallbackFunction"}
    code_dirs = iam.function_code_dirs(template)
    assert set(code_dirs.values()) == set(functions)
    for function in functions:
        assert iam.grants(resolver, function), function


def test_the_tightened_roles_deny_what_the_code_does_not_need():
    template = iam.translated_template()
    names = {"JobsTable": "jobs", "VideoBucket": "videos"}
    resolver = iam.Resolver(template, names=names)
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"
    for function in ("CallbackFunction", "PollFunction", "StoreFunction"):
        role = iam.grants(resolver, function)
        assert iam.allows(role, iam.Need("dynamodb:UpdateItem", table)), function
        for action in ("dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"):
            assert not iam.allows(role, iam.Need(action, table)), (function, action)
    status = iam.grants(resolver, "StatusFunction")
    assert iam.allows(status, iam.Need("dynamodb:Query", f"{table}/index/by_created"))
    assert not iam.allows(status, iam.Need("dynamodb:Scan", table))
    assert not iam.allows(status, iam.Need("s3:GetObject", "arn:aws:s3:::videos/inputs/a.png"))


def test_a_call_the_role_does_not_grant_is_reported_with_function_action_and_resource():
    # Given a status function call its role does not grant (a Scan of the jobs table)
    recorder = plugin.Recorder()
    call = Call(
        function="status",
        service="dynamodb",
        operation="Scan",
        params_json=json.dumps({"TableName": "jobs"}),
        region=REGION,
        env=(("JOBS_TABLE", "jobs"),),
        presigned=False,
    )

    # When it is checked
    denied = recorder.check([call])

    # Then the message names all three
    assert denied == [
        "StatusFunction may not dynamodb:Scan on arn:aws:dynamodb:us-east-1:123456789012:table/jobs (dynamodb.Scan)"
    ]


def test_handler_calls_are_recorded_with_their_function(ctx, context):
    # Given a job (written by the test itself: not recorded)
    job = Job.new(route="task", model="sora-2", prompt="a cat", seconds=10)
    ctx.repo.create(job)
    assert plugin.RECORDER.pending == []

    # When the status handler reads it
    assert invoke("status", get_event(job.id), context)["statusCode"] == 200

    # Then its GetItem is recorded as the status function's
    calls = plugin.RECORDER.pending
    assert [(c.function, c.service, c.operation) for c in calls] == [("status", "dynamodb", "GetItem")]
    assert json.loads(calls[0].params_json)["TableName"] == "jobs"


def test_calls_from_local_stack_workers_are_read_back_line_by_line(tmp_path):
    # Given a worker's file with two complete lines and one still being written
    path = tmp_path / "calls.jsonl"
    call = Call("status", "dynamodb", "GetItem", '{"TableName": "jobs"}', REGION, (("JOBS_TABLE", "jobs"),), False)
    path.write_text(call.to_json() + "\n" + call.to_json() + "\n" + call.to_json()[:10])

    # When they are read from the start, then again from where reading stopped
    first, offset = read_new(str(path), 0)
    again, same = read_new(str(path), offset)

    # Then the complete lines come back as equal calls, once; the partial line waits
    assert first == [call, call]
    assert again == [] and same == offset
    assert read_new(str(tmp_path / "missing.jsonl"), 0) == ([], 0)
