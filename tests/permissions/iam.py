"""IAM as `sam deploy` would create it, evaluated offline against the AWS calls the code makes.

Three parts, all data-driven from template.yaml:

- :func:`translated_template`: the template translated by the SAM translator that the pinned
  SAM CLI uses (run in ``.venv-sam``, see ``scripts/sam_translate.py``), so policy templates
  (``DynamoDBCrudPolicy`` ...) expand exactly as they will in AWS.
- :func:`required` : the tested table operation -> IAM action(s) + resource ARN(s).
- :class:`Roles`: each function's role statements with every intrinsic resolved against the
  names the functions saw in their environment (so ``!Ref JobsTable`` is the table the test
  wrote to), and :meth:`Roles.allows` evaluating Allow statements with wildcards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
ACCOUNT = "123456789012"  # moto's default account
PARTITION = "aws"
# A Secrets Manager ARN ends in "-" and six random characters; the fake world uses these.
SECRET_SUFFIX = "AbCdEf"

# Managed policies the SAM translator attaches (basic execution and X-Ray), with their
# documented contents; a role naming any other managed policy fails the check until added.
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    # Added by SAM for a DynamoDB stream / SQS event source (AWS's published policy contents).
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
}


# ---- the SAM translation ---------------------------------------------------------------------


class TranslatorUnavailable(RuntimeError):
    pass


@cache
def translated_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """template.yaml as plain CloudFormation (the SAM transform applied)."""
    if not SAM_PYTHON.exists():
        raise TranslatorUnavailable(f"{SAM_PYTHON} is missing: `make validate` creates .venv-sam with the pinned SAM CLI")
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    answer = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "scripts" / "sam_translate.py"), str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if answer.returncode != 0:
        raise TranslatorUnavailable(f"SAM translation failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout)


# ---- operation -> action + resource -----------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """One permission a call needs."""

    action: str
    resource: str


def _object_arn(params: dict[str, Any]) -> str:
    return f"arn:{PARTITION}:s3:::{params['Bucket']}/{params['Key']}"


def _bucket_arn(params: dict[str, Any]) -> str:
    return f"arn:{PARTITION}:s3:::{params['Bucket']}"


def secret_arn(secret_id: str, region: str) -> str:
    """The ARN a secret name stands for (names resolve to the full ARN with its suffix)."""
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT}:secret:{secret_id}-{SECRET_SUFFIX}"


def queue_arn(queue_url: str) -> str:
    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    region = host.split(".")[1] if host.startswith("sqs.") else "us-east-1"
    path = parts.path.strip("/").split("/")
    if len(path) < 2:  # a bare queue name (no URL seen for it in this run)
        return f"arn:{PARTITION}:sqs:{region}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
    account, name = path[-2:]
    return f"arn:{PARTITION}:sqs:{region}:{account}:{name}"


# S3 operations whose IAM action is not "s3:<Operation>".
S3_ACTIONS = {
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "HeadBucket": "s3:ListBucket",
}
S3_BUCKET_OPERATIONS = {"ListObjectsV2", "ListObjects", "ListMultipartUploads", "HeadBucket"}
DYNAMODB_TABLE_OPERATIONS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable", "ConditionCheckItem"}
DYNAMODB_INDEX_OPERATIONS = {"Query", "Scan"}


class UnmappedOperation(KeyError):
    """An AWS operation the table below does not know yet: add it (and a test)."""


def required(service: str, operation: str, params: dict[str, Any], region: str) -> list[Need]:
    """The IAM permissions one API call needs (``service`` is botocore's service name)."""
    arn_prefix = f"{region}:{ACCOUNT}"
    if service == "s3":
        if operation == "CopyObject":
            source = params["CopySource"]
            source_arn = (
                f"arn:{PARTITION}:s3:::{source['Bucket']}/{source['Key']}"
                if isinstance(source, dict)
                else f"arn:{PARTITION}:s3:::{str(source).lstrip('/')}"
            )
            return [Need("s3:PutObject", _object_arn(params)), Need("s3:GetObject", source_arn)]
        if operation not in S3_ACTIONS:
            raise UnmappedOperation(f"s3.{operation}")
        arn = _bucket_arn(params) if operation in S3_BUCKET_OPERATIONS else _object_arn(params)
        return [Need(S3_ACTIONS[operation], arn)]
    if service == "dynamodb":
        if operation in DYNAMODB_TABLE_OPERATIONS | DYNAMODB_INDEX_OPERATIONS:
            arn = f"arn:{PARTITION}:dynamodb:{arn_prefix}:table/{params['TableName']}"
            if operation in DYNAMODB_INDEX_OPERATIONS and params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            return [Need(f"dynamodb:{operation}", arn)]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            tables = sorted(params["RequestItems"])
            return [Need(f"dynamodb:{operation}", f"arn:{PARTITION}:dynamodb:{arn_prefix}:table/{t}") for t in tables]
        if operation == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
            needs = []
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                needs.append(Need(f"dynamodb:{kinds[kind]}", f"arn:{PARTITION}:dynamodb:{arn_prefix}:table/{body['TableName']}"))
            return needs
        raise UnmappedOperation(f"dynamodb.{operation}")
    if service == "secretsmanager":
        if operation in ("GetSecretValue", "DescribeSecret"):
            return [Need(f"secretsmanager:{operation}", secret_arn(params["SecretId"], region))]
        raise UnmappedOperation(f"secretsmanager.{operation}")
    if service == "stepfunctions":
        if operation in ("StartExecution", "StartSyncExecution"):
            return [Need(f"states:{operation}", params["stateMachineArn"])]
        if operation in ("DescribeExecution", "StopExecution", "GetExecutionHistory"):
            return [Need(f"states:{operation}", params["executionArn"])]
        if operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"):
            return [Need(f"states:{operation}", "*")]  # task tokens have no resource
        raise UnmappedOperation(f"stepfunctions.{operation}")
    if service == "sqs":
        actions = {
            "SendMessage": "sqs:SendMessage",
            "SendMessageBatch": "sqs:SendMessage",
            "ReceiveMessage": "sqs:ReceiveMessage",
            "DeleteMessage": "sqs:DeleteMessage",
            "DeleteMessageBatch": "sqs:DeleteMessage",
            "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
            "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
            "GetQueueAttributes": "sqs:GetQueueAttributes",
        }
        if operation not in actions:
            raise UnmappedOperation(f"sqs.{operation}")
        return [Need(actions[operation], queue_arn(params["QueueUrl"]))]
    if service == "events":
        if operation == "PutEvents":
            buses = {entry.get("EventBusName") or "default" for entry in params["Entries"]}
            return [
                Need(
                    "events:PutEvents", bus if bus.startswith("arn:") else f"arn:{PARTITION}:events:{arn_prefix}:event-bus/{bus}"
                )
                for bus in sorted(buses)
            ]
        raise UnmappedOperation(f"events.{operation}")
    if service == "sns":
        if operation == "Publish":
            return [Need("sns:Publish", params.get("TopicArn") or params["TargetArn"])]
        raise UnmappedOperation(f"sns.{operation}")
    if service == "ssm":
        if operation in ("GetParameter", "GetParameters"):
            names = [params["Name"]] if operation == "GetParameter" else params["Names"]
            return [
                Need(
                    f"ssm:{operation}",
                    n if n.startswith("arn:") else f"arn:{PARTITION}:ssm:{arn_prefix}:parameter/{n.lstrip('/')}",
                )
                for n in names
            ]
        raise UnmappedOperation(f"ssm.{operation}")
    if service == "lambda" and operation == "Invoke":
        name = params["FunctionName"]
        return [
            Need(
                "lambda:InvokeFunction",
                name if name.startswith("arn:") else f"arn:{PARTITION}:lambda:{arn_prefix}:function:{name}",
            )
        ]
    raise UnmappedOperation(f"{service}.{operation}")


# ---- intrinsics -------------------------------------------------------------------------------


class NoValue:
    """``AWS::NoValue``: the property or list item disappears."""


NO_VALUE = NoValue()


@dataclass
class Resolver:
    """Resolves intrinsics of the translated template against one deployment's names.

    ``names`` maps a logical id to the value its ``Ref`` has (as the functions saw it in their
    environment); the other attributes are derived from it, or made up per logical id.
    """

    template: dict[str, Any]
    region: str = "us-east-1"
    names: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)

    def resource_type(self, logical_id: str) -> str:
        return str(self.template["Resources"][logical_id]["Type"])

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": "videogen",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/videogen/fake",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            if name in self.parameters:
                return self.parameters[name]
            return str(self.template["Parameters"][name].get("Default", ""))
        if name in self.names:
            kind = self.resource_type(name)
            value = self.names[name]
            if kind == "AWS::SecretsManager::Secret":
                return secret_arn(value, self.region)
            return value
        return self._made_up_ref(name)

    def _made_up_ref(self, logical_id: str) -> str:
        kind = self.resource_type(logical_id)
        physical = f"videogen-{logical_id}-FAKE"
        arn_prefix = f"{self.region}:{ACCOUNT}"
        return {
            "AWS::SecretsManager::Secret": secret_arn(physical, self.region),
            "AWS::StepFunctions::StateMachine": f"arn:{PARTITION}:states:{arn_prefix}:stateMachine:{physical}",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{arn_prefix}:{physical}",
            "AWS::SQS::Queue": f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/{physical}",
            "AWS::KMS::Key": "1234abcd-12ab-34cd-56ef-1234567890ab",
        }.get(kind, physical)

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resource_type(logical_id)
        ref = self.ref(logical_id)
        arn_prefix = f"{self.region}:{ACCOUNT}"
        if kind == "AWS::DynamoDB::Table":
            table = f"arn:{PARTITION}:dynamodb:{arn_prefix}:table/{ref}"
            return {"Arn": table, "StreamArn": f"{table}/stream/2026-01-01T00:00:00.000"}[attribute]
        if kind == "AWS::S3::Bucket":
            return {"Arn": f"arn:{PARTITION}:s3:::{ref}", "DomainName": f"{ref}.s3.amazonaws.com"}[attribute]
        if kind == "AWS::Lambda::Function":
            return {"Arn": f"arn:{PARTITION}:lambda:{arn_prefix}:function:{ref}"}[attribute]
        if kind == "AWS::StepFunctions::StateMachine":
            return {"Arn": ref, "Name": ref.rsplit(":", 1)[-1]}[attribute]
        if kind == "AWS::SQS::Queue":
            return {"Arn": queue_arn(ref), "QueueName": ref.rsplit("/", 1)[-1], "QueueUrl": ref}[attribute]
        if kind == "AWS::SNS::Topic":
            return {"TopicArn": ref, "TopicName": ref.rsplit(":", 1)[-1]}[attribute]
        if kind == "AWS::Events::EventBus":
            return {"Arn": f"arn:{PARTITION}:events:{arn_prefix}:event-bus/{ref}", "Name": ref}[attribute]
        if kind == "AWS::Logs::LogGroup":
            return {"Arn": f"arn:{PARTITION}:logs:{arn_prefix}:log-group:{ref}:*"}[attribute]
        if kind == "AWS::KMS::Key":
            return {"Arn": f"arn:{PARTITION}:kms:{arn_prefix}:key/{ref}", "KeyId": ref}[attribute]
        if kind == "AWS::IAM::Role":
            return {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{ref}", "RoleId": f"AROA{logical_id.upper()}"}[attribute]
        if kind == "AWS::SecretsManager::Secret":
            raise KeyError(f"{logical_id}.{attribute}")
        return f"{ref}.{attribute}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                resolved = {k: self.resolve(v) for k, v in variables.items()}
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub_variable(m.group(1), resolved)), text)
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
        return {k: r for k, v in value.items() if (r := self.resolve(v)) is not NO_VALUE}

    def _sub_variable(self, name: str, variables: dict[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return self.get_att(logical_id, attribute)
        return self.ref(name)


# ---- roles and evaluation ---------------------------------------------------------------------


def _pattern(text: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True)
class Grant:
    """One action pattern on one resource pattern, from an Allow statement."""

    function: str
    action: str
    resource: str
    managed: bool = False

    def matches(self, need: Need) -> bool:
        return bool(
            _pattern(self.action, ignore_case=True).match(need.action)
            and _pattern(self.resource, ignore_case=False).match(need.resource)
        )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lambda_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> translated ``AWS::Lambda::Function`` (its role is ``<id>Role`` by SAM's rule)."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}


def role_of(template: dict[str, Any], function: str) -> str:
    role = template["Resources"][function]["Properties"]["Role"]
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        return str(_as_list(role["Fn::GetAtt"])[0]).split(".")[0]
    raise ValueError(f"{function}: role {role!r} is not a role of this template")


def grants(resolver: Resolver, function: str) -> list[Grant]:
    """Every Allow (action, resource) pair of ``function``'s role, intrinsics resolved."""
    template = resolver.template
    role = template["Resources"][role_of(template, function)]["Properties"]
    statements: list[tuple[dict[str, Any], bool]] = []
    for arn in resolver.resolve(role.get("ManagedPolicyArns", [])):
        if arn not in MANAGED_POLICIES:
            raise KeyError(f"{function}: managed policy {arn} has no known content (add it to MANAGED_POLICIES)")
        statements += [(s, True) for s in MANAGED_POLICIES[arn]]
    for policy in role.get("Policies", []):
        statements += [(s, False) for s in _as_list(resolver.resolve(policy["PolicyDocument"])["Statement"])]
    # Stand-alone AWS::IAM::Policy / ManagedPolicy resources attached to the role.
    for res in template["Resources"].values():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = [r.get("Ref") if isinstance(r, dict) else r for r in res["Properties"].get("Roles", [])]
            if role_of(template, function) in roles:
                statements += [(s, False) for s in _as_list(resolver.resolve(res["Properties"]["PolicyDocument"])["Statement"])]
    found = []
    for statement, managed in statements:
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement or "Condition" in statement:
            raise ValueError(
                f"{function}: statement {statement} uses NotAction/NotResource/Condition, which this check does not model"
            )
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                found.append(Grant(function, str(action), str(resource), managed))
    return found


def allows(role_grants: list[Grant], need: Need) -> bool:
    return any(grant.matches(need) for grant in role_grants)


def function_code_dirs(template: dict[str, Any]) -> dict[str, str]:
    """functions/<dir> -> logical id, from the untranslated template's ``CodeUri``."""
    from local.template import template as sam_template

    found = {}
    for logical_id, res in sam_template()["Resources"].items():
        if res.get("Type") == "AWS::Serverless::Function":
            code = str(res["Properties"].get("CodeUri", "")).rstrip("/")
            found[Path(code).name] = logical_id
    return found


def environment_refs(function: str) -> dict[str, str]:
    """Environment variable -> logical id it is ``!Ref`` to (Globals merged with the function's)."""
    from local.template import template as sam_template

    source = sam_template()
    merged = dict(source.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(source["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}))
    refs = {}
    for key, value in merged.items():
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in source["Resources"]:
            refs[key] = value["Ref"]
    return refs


def symbolic_params(params: Any, names: dict[str, str]) -> Any:
    """``params`` with every value that is a resource's physical name written ``{LogicalId}``."""
    if isinstance(params, dict):
        return {k: symbolic_params(v, names) for k, v in params.items()}
    if isinstance(params, list):
        return [symbolic_params(v, names) for v in params]
    for logical_id, physical in names.items():
        if params == physical:
            if physical.startswith("arn:"):
                return physical[: physical.rfind(":") + 1] + f"{{{logical_id}}}"
            return f"{{{logical_id}}}"
    return params


def symbolic_region(resource: str, region: str) -> str:
    return resource.replace(f":{region}:{ACCOUNT}:", ":{Region}:{Account}:").replace(f"-{SECRET_SUFFIX}", "")


def symbolic_grants(template: dict[str, Any], function: str) -> list[Grant]:
    """``function``'s grants with every resource named ``{LogicalId}`` (for reports and docs)."""
    names = {lid: f"__{lid}__" for lid in template["Resources"]}
    resolver = Resolver(template, region="us-east-1", names=names)
    found = []
    for grant in grants(resolver, function):
        resource = re.sub(r"__(\w+?)__", r"{\1}", symbolic_region(grant.resource, "us-east-1"))
        found.append(Grant(grant.function, grant.action, resource, grant.managed))
    return found


def unused_grants(used: dict[str, set[tuple[str, str]]]) -> dict[str, list[str]]:
    """Per function in ``used`` (symbolic pairs): its role's non-managed grants no pair matched."""
    template = translated_template()
    unused: dict[str, list[str]] = {}
    for function, pairs in used.items():
        for grant in symbolic_grants(template, function):
            if grant.managed or any(grant.matches(Need(a, r)) for a, r in pairs):
                continue
            line = f"{grant.action} on {grant.resource}"
            if line not in unused.setdefault(function, []):
                unused[function].append(line)
    return {k: v for k, v in unused.items() if v}


def main() -> None:  # pragma: no cover - debugging aid
    template = translated_template()
    resolver = Resolver(template)
    for function in lambda_functions(template):
        print(function)
        for grant in grants(resolver, function):
            print("   ", grant.action, grant.resource, "(managed)" if grant.managed else "")


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(ROOT))
    main()
