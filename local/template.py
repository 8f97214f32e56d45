"""Read template.yaml (CloudFormation tags included), so tests and the local stack build from it.

Everything the local stack creates (tables, bucket, secrets, state machine, functions and
their environment, HTTP routes) is read from the template here, so template and local stack
cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def resource(name: str) -> dict[str, Any]:
    return template()["Resources"][name]


def resources_of_type(kind: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of CloudFormation type ``kind``."""
    return {name: res for name, res in template()["Resources"].items() if res.get("Type") == kind}


def table_kwargs(table_name: str, logical_id: str = "JobsTable") -> dict[str, Any]:
    """``create_table`` arguments from a table's definition (keys, indexes, billing)."""
    props = resource(logical_id)["Properties"]
    kwargs = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        # CloudFormation names only the view type; the API also wants the switch.
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return kwargs


def bucket_lifecycle(logical_id: str = "VideoBucket") -> dict[str, Any]:
    """The bucket's lifecycle rules, translated from CloudFormation to S3 API spelling."""
    rules = []
    for rule in resource(logical_id)["Properties"]["LifecycleConfiguration"]["Rules"]:
        api_rule = {("ID" if k == "Id" else k): v for k, v in rule.items()}
        api_rule["Filter"] = {"Prefix": api_rule.pop("Prefix", "")}
        if "ExpirationInDays" in api_rule:
            api_rule["Expiration"] = {"Days": api_rule.pop("ExpirationInDays")}
        rules.append(api_rule)
    return {"Rules": rules}


# -- intrinsic functions ------------------------------------------------------------------


@dataclass
class Names:
    """What ``Ref`` and ``Fn::GetAtt`` give for the local stack's resources and parameters."""

    refs: dict[str, Any]
    attributes: dict[tuple[str, str], Any]
    region: str = "us-east-1"
    account: str = "123456789012"
    stack: str = "videogen-local"


def resolve(value: Any, names: Names) -> Any:
    """Evaluate the intrinsic functions the template uses (Ref, GetAtt, Sub, If, Equals, Not, Join)."""
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: resolve(v, names) for k, v in value.items()}
    ((key, arg),) = value.items()
    if key == "Ref":
        return _ref(arg, names)
    if key == "Fn::GetAtt":
        logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        if (logical, attribute) not in names.attributes:
            raise KeyError(f"the local stack has no value for !GetAtt {logical}.{attribute}")
        return names.attributes[(logical, attribute)]
    if key == "Fn::Sub":
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], names))
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_sub_var(m.group(1), extra, names)), text)
    if key == "Fn::If":
        condition, when_true, when_false = arg
        chosen = when_true if condition_value(condition, names) else when_false
        return resolve(chosen, names)
    if key == "Fn::Join":
        separator, items = arg
        return separator.join(str(v) for v in resolve(items, names))
    if key == "Fn::Equals":
        left, right = resolve(arg, names)
        return left == right
    if key == "Fn::Not":
        return not resolve(arg[0], names)
    return {key: resolve(arg, names)}


def _ref(name: str, names: Names) -> Any:
    pseudo = {
        "AWS::Region": names.region,
        "AWS::AccountId": names.account,
        "AWS::StackName": names.stack,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::Partition": "aws",
        "AWS::NoValue": None,
    }
    if name in pseudo:
        return pseudo[name]
    if name not in names.refs:
        raise KeyError(f"the local stack has no value for !Ref {name}")
    return names.refs[name]


def _sub_var(name: str, extra: dict[str, Any], names: Names) -> Any:
    if name in extra:
        return extra[name]
    if "." in name:
        logical, attribute = name.split(".", 1)
        return names.attributes[(logical, attribute)]
    return _ref(name, names)


def condition_value(name: str, names: Names) -> bool:
    return bool(resolve(template().get("Conditions", {})[name], names))


def parameter_defaults() -> dict[str, str]:
    """Each template parameter's default (as a string, as CloudFormation passes them)."""
    return {name: str(p.get("Default", "")) for name, p in template().get("Parameters", {}).items()}


# -- functions, routes, workflow ----------------------------------------------------------


@dataclass
class FunctionDef:
    """A function as the template defines it, Globals merged in."""

    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]  # unresolved values (intrinsics still in them)
    http_routes: list[tuple[str, str]]  # (METHOD, /path/{param})


def functions() -> dict[str, FunctionDef]:
    """Every ``AWS::Serverless::Function``, with Globals.Function applied."""
    defaults = template().get("Globals", {}).get("Function", {})
    found: dict[str, FunctionDef] = {}
    for name, res in resources_of_type("AWS::Serverless::Function").items():
        props = {**defaults, **res.get("Properties", {})}
        env = dict(defaults.get("Environment", {}).get("Variables", {}))
        env.update(res.get("Properties", {}).get("Environment", {}).get("Variables", {}))
        routes = []
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                ev = event.get("Properties", {})
                routes.append((str(ev.get("Method", "ANY")).upper(), str(ev.get("Path", "/$default"))))
        found[name] = FunctionDef(
            logical_id=name,
            code_dir=ROOT / str(props["CodeUri"]),
            handler=str(props.get("Handler", "app.lambda_handler")),
            timeout=int(props.get("Timeout", 3)),
            memory=int(props.get("MemorySize", 128)),
            environment=env,
            http_routes=routes,
        )
    return found


@dataclass
class StateMachineDef:
    logical_id: str
    definition_path: Path
    substitutions: dict[str, Any]  # unresolved values
    kind: str


def state_machines() -> dict[str, StateMachineDef]:
    """Every ``AWS::Serverless::StateMachine`` with its ASL file and substitutions."""
    found = {}
    for name, res in resources_of_type("AWS::Serverless::StateMachine").items():
        props = res.get("Properties", {})
        found[name] = StateMachineDef(
            logical_id=name,
            definition_path=ROOT / str(props["DefinitionUri"]),
            substitutions=dict(props.get("DefinitionSubstitutions", {})),
            kind=str(props.get("Type", "STANDARD")),
        )
    return found


def substitute_definition(text: str, substitutions: dict[str, Any]) -> str:
    """Apply ``DefinitionSubstitutions`` (``${Name}``) to an ASL file; an unknown name is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise KeyError(f"ASL placeholder ${{{name}}} has no DefinitionSubstitutions entry")
        return str(substitutions[name])

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", replace, text)
