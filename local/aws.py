"""AWS on loopback: moto in server mode, in this process, with the template's resources.

* ``moto.server.ThreadedMotoServer`` on 127.0.0.1 with Step Functions execution on and
  Lambda without Docker (``/moto-api/config``); ``MOTO_PORT`` is set to its port, because
  moto's Step Functions engine calls Lambda at ``localhost:$MOTO_PORT``.
* Lambda invocations (the workflow's Lambda tasks) are routed to the real handlers by
  ``local.bridge`` (the stack installs it), with Lambda's error protocol.
* DynamoDB requests are served one at a time (``local.dynamodb``, held while the server
  runs): moto's condition checks are not atomic under threads, DynamoDB's single-item writes
  are, and the pipeline's exactly-once rules rest on that.
* Tables, bucket, secrets and the state machine come from template.yaml's own definitions.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from contextlib import ExitStack
from typing import Any

import boto3
import httpx
from botocore.config import Config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from local import template as cfn
from local.bridge import MOTO_CONFIG
from local.dynamodb import atomic_dynamodb_requests

REGION = "us-east-1"
ACCOUNT = "123456789012"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}


class LocalAws:
    """The moto server and the template's resources in it."""

    def __init__(self, port: int = 0) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""
        self.port = 0
        self.hooks = ExitStack()

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access line per AWS call
        self.hooks.enter_context(atomic_dynamodb_requests())
        self.server.start()
        host, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{self.port}"
        response = httpx.post(f"{self.endpoint}/moto-api/config", json=MOTO_CONFIG, timeout=10)
        response.raise_for_status()

    def stop(self) -> None:
        self.server.stop()
        self.hooks.close()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    # -- resources from the template ------------------------------------------------------

    def create_tables(self, names: dict[str, str]) -> None:
        """Each ``AWS::DynamoDB::Table`` with its keys, indexes, billing, TTL and PITR."""
        dynamodb = self.client("dynamodb")
        for logical_id, name in names.items():
            props = cfn.resource(logical_id)["Properties"]
            dynamodb.create_table(**cfn.table_kwargs(name, logical_id))
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            pitr = props.get("PointInTimeRecoverySpecification")
            if pitr:
                dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=pitr)

    def create_bucket(self, logical_id: str, name: str) -> None:
        """The bucket with the template's encryption, public access block, ownership, lifecycle
        rules and EventBridge notifications."""
        s3 = self.client("s3")
        props = cfn.resource(logical_id)["Properties"]
        s3.create_bucket(Bucket=name)
        if "BucketEncryption" in props:
            # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault.
            rules = [
                {
                    ("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                    for k, v in rule.items()
                }
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        if "LifecycleConfiguration" in props:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=cfn.bucket_lifecycle(logical_id))
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})

    def create_secrets(self, values: dict[str, str | None]) -> dict[str, str]:
        """Each ``AWS::SecretsManager::Secret``; ``values`` gives a literal value, else the
        template's ``GenerateSecretString`` is followed. Returns logical id -> ARN (its Ref)."""
        manager = self.client("secretsmanager")
        arns = {}
        for logical_id, res in cfn.resources_of_type("AWS::SecretsManager::Secret").items():
            value = values.get(logical_id)
            if value is None:
                value = generate_secret_string(res.get("Properties", {}).get("GenerateSecretString", {}))
            arns[logical_id] = manager.create_secret(Name=f"videogen-local/{logical_id}", SecretString=value)["ARN"]
        return arns

    def create_state_machine(self, logical_id: str, name: str, substitutions: dict[str, Any]) -> str:
        definition = cfn.state_machines()[logical_id]
        text = cfn.substitute_definition(definition.definition_path.read_text(), substitutions)
        json.loads(text)  # a broken ASL file fails here, with the file's own error
        answer = self.client("stepfunctions").create_state_machine(
            name=name, definition=text, roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}-role", type=definition.kind
        )
        return str(answer["stateMachineArn"])


def generate_secret_string(spec: dict[str, Any]) -> str:
    """What Secrets Manager's ``GenerateSecretString`` makes: a template with one random key."""
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits + ("" if spec.get("ExcludePunctuation") else "!#$%&()*+,-.:;<=>?@[]^_{|}~")
    password = "".join(secrets.choice(alphabet) for _ in range(length))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        body = json.loads(spec["SecretStringTemplate"])
        body[spec["GenerateStringKey"]] = password
        return json.dumps(body)
    return password
