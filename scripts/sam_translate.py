"""Translate template.yaml to plain CloudFormation with the SAM translator `sam` itself uses.

Runs under the SAM CLI's virtualenv (``.venv-sam/bin/python scripts/sam_translate.py``): the
translator pins a pydantic the layer's own pin conflicts with, so it cannot share ``.venv``.
Local ``CodeUri``/``ContentUri``/``DefinitionUri`` paths become placeholder S3 URIs, as
``sam validate`` does. Prints the translated template as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


def translate(path: Path) -> dict[str, Any]:
    template = yaml_parse(path.read_text())
    for logical_id, resource in template.get("Resources", {}).items():
        prop = LOCAL_URI_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if prop and isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = f"s3://local-build/{logical_id}"
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), plugins=[])
    return translator.translate(sam_template=template, parameter_values={}, get_managed_policy_map=lambda: {})


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
    json.dump(translate(source), sys.stdout, indent=1, default=str)
