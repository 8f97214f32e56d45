"""template.yaml against the code: env vars, routes, auth, secrets, tables and the workflow.

`sam validate --lint` checks the template's shape; these tests check that it matches what the
code reads and serves, so the two cannot drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from tests.conftest import load_handler
from tests.template import ROOT, resource, template
from videogen.settings import Settings

CLIENT_ROUTES = {
    ("POST", "/videos"),
    ("GET", "/videos"),
    ("GET", "/videos/{id}"),
    ("GET", "/models"),
    ("GET", "/webhooks/secret"),
}
CALLBACK_ROUTE = ("POST", "/callbacks/{id}")


def functions() -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template()["Resources"].items() if res["Type"] == "AWS::Serverless::Function"}


def http_events(function: dict[str, Any]) -> list[dict[str, Any]]:
    events = function["Properties"].get("Events", {}).values()
    return [event["Properties"] for event in events if event["Type"] == "HttpApi"]


def environment(name: str) -> dict[str, Any]:
    merged = dict(template()["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(functions()[name]["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def policies(name: str) -> list[dict[str, Any]]:
    return functions()[name]["Properties"].get("Policies", [])


def readable_secrets(name: str) -> set[str]:
    return {
        p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
        for p in policies(name)
        if "AWSSecretsManagerGetSecretValuePolicy" in p
    }


def test_every_environment_variable_is_a_setting_or_powertools():
    # Given the settings model's fields
    known = {field.upper() for field in Settings.model_fields}

    # When every function's environment is collected
    for name in functions():
        env = environment(name)

        # Then each variable is read by Settings (or by Powertools itself)
        unknown = {key for key in env if key not in known and not key.startswith("POWERTOOLS_")}
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
        assert {"JOBS_TABLE", "VIDEO_BUCKET", "CALLBACK_SECRET", "TASK_API_KEY_SECRET"} <= env.keys()


def test_only_submit_and_callback_start_workflows():
    for name in functions():
        starts = any("StepFunctionsExecutionPolicy" in p for p in policies(name))
        has_arn = "STATE_MACHINE_ARN" in environment(name)
        assert starts == has_arn == (name in {"SubmitFunction", "CallbackFunction"}), name


def test_secret_arns_in_the_environment_match_the_secrets_each_function_may_read():
    # The callback needs the signing keys and the task key; status only the signing keys (cursors).
    assert readable_secrets("CallbackFunction") == {"CallbackSigningSecret", "TaskApiKeySecret"}
    assert readable_secrets("StatusFunction") == {"CallbackSigningSecret"}
    assert readable_secrets("StoreFunction") == {"OfficialApiKeySecret"}
    assert readable_secrets("GenerateFunction") == {"LegacyApiKeySecret"}
    assert "CallbackSigningSecret" in readable_secrets("SubmitFunction")
    for name in functions():
        env_refs = {value["Ref"] for value in environment(name).values() if isinstance(value, dict) and "Ref" in value}
        assert readable_secrets(name) <= env_refs, f"{name} may read a secret it is not told about"


def test_secrets_are_generated_never_literal():
    for name, res in template()["Resources"].items():
        if res["Type"] != "AWS::SecretsManager::Secret":
            continue
        props = res["Properties"]
        assert "SecretString" not in props, f"{name} holds a literal secret"
        assert props["GenerateSecretString"]["GenerateStringKey"] in ({"api_key", "v1"})
    signing = resource("CallbackSigningSecret")["Properties"]["GenerateSecretString"]
    assert signing["SecretStringTemplate"] == '{"active": "v1"}' and signing["PasswordLength"] >= 32


def test_http_events_match_the_handlers_routes():
    # Given each function's HttpApi events
    for name, function in functions().items():
        events = http_events(function)
        if not events:
            continue
        app = load_handler(Path(function["Properties"]["CodeUri"]).name).app
        routes = app._static_routes + app._dynamic_routes

        # Then every event's method and path is served by the handler's resolver
        for event in events:
            path = re.sub(r"\{[^}]+\}", "job-123", event["Path"])
            assert any(route.method == event["Method"] and route.rule.match(path) for route in routes), (name, event)


def test_client_routes_use_iam_unless_disabled_and_callbacks_have_no_authorizer():
    api = resource("HttpApi")["Properties"]
    paths = api["DefinitionBody"]["paths"]
    conditional_iam = {"Fn::If": ["UseIamAuth", [{"AWS_IAM": []}], {"Ref": "AWS::NoValue"}]}

    # Every client route served by a function gets the conditional IAM requirement
    served = {(event["Method"], event["Path"]) for f in functions().values() for event in http_events(f)}
    assert served == CLIENT_ROUTES | {CALLBACK_ROUTE}
    for method, path in CLIENT_ROUTES:
        assert paths[path][method.lower()]["security"] == conditional_iam
    assert api["DefinitionBody"]["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert template()["Conditions"]["UseIamAuth"] == {"Fn::Equals": [{"Ref": "ClientAuth"}, "AWS_IAM"]}

    # The callback route is authenticated by its token only
    assert CALLBACK_ROUTE[1] not in paths
    assert "Auth" not in api
    assert all("Auth" not in event for f in functions().values() for event in http_events(f))


def test_idempotency_table_matches_powertools_defaults():
    # Given the persistence layer submit uses, with its default attribute names
    layer = DynamoDBPersistenceLayer(table_name="idempotency")
    props = resource("IdempotencyTable")["Properties"]

    # Then the table's key and TTL attributes are those names
    assert props["KeySchema"] == [{"AttributeName": layer.key_attr, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": layer.expiry_attr, "Enabled": True}
    assert environment("SubmitFunction")["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}


def test_function_code_exists_for_every_function():
    handler = template()["Globals"]["Function"]["Handler"]
    module, _, attribute = handler.partition(".")
    for name, function in functions().items():
        code = ROOT / function["Properties"]["CodeUri"] / f"{module}.py"
        assert code.is_file(), f"{name}: {code} is missing"
        assert f"def {attribute}(" in code.read_text()


def test_state_machine_substitutions_cover_the_definition():
    machine = resource("JobStateMachine")["Properties"]
    definition = ROOT / machine["DefinitionUri"]
    if not definition.is_file():
        pytest.skip(f"{machine['DefinitionUri']} not written yet")
    used = set(re.findall(r"\$\{(\w+)\}", definition.read_text()))
    assert used <= machine["DefinitionSubstitutions"].keys()
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in machine["Policies"] if "LambdaInvokePolicy" in p}
    targets = {value["Fn::GetAtt"][0] for value in machine["DefinitionSubstitutions"].values()}
    assert targets <= invoked
