"""Read template.yaml (CloudFormation tags included) so tests build AWS resources from it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def resource(name: str) -> dict[str, Any]:
    return template()["Resources"][name]


def table_kwargs(table_name: str) -> dict[str, Any]:
    """``create_table`` arguments from the JobsTable definition (keys, indexes, billing)."""
    props = resource("JobsTable")["Properties"]
    kwargs = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return kwargs


def bucket_lifecycle() -> dict[str, Any]:
    """The bucket's lifecycle rules, translated from CloudFormation to S3 API spelling."""
    rules = []
    for rule in resource("VideoBucket")["Properties"]["LifecycleConfiguration"]["Rules"]:
        api_rule = {("ID" if k == "Id" else k): v for k, v in rule.items()}
        api_rule.setdefault("Filter", {"Prefix": api_rule.pop("Prefix", "")})
        rules.append(api_rule)
    return {"Rules": rules}
