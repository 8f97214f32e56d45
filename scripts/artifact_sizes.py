"""Sizes of what `sam build` produced, against Lambda's limits; `make build` runs it.

Reads .aws-sam/build/template.yaml (the built template: each function's CodeUri and Layers
point at the built directories), prints every function's and layer's unzipped size, and exits
non-zero when a function with its layers exceeds Lambda's 250 MB unzipped limit or a layer
ships its own boto3/botocore (the runtime's must be the only one: a second botocore shadows
the runtime's while boto3 still comes from the runtime).

    python scripts/artifact_sizes.py [--build-dir .aws-sam/build] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
UNZIPPED_LIMIT_BYTES = 262_144_000  # function code and all its layers, unzipped
FORBIDDEN_IN_LAYERS = ("boto3", "botocore", "s3transfer")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_yaml_object(node, _Loader)})


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            file = Path(dirpath) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


@dataclass
class Report:
    functions: dict[str, tuple[int, int]] = field(default_factory=dict)  # code bytes, with layers
    layers: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def measure(build_dir: Path) -> Report:
    built = yaml.load((build_dir / "template.yaml").read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    resources = built["Resources"]
    report = Report()
    for name, res in resources.items():
        if res["Type"] in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            content = build_dir / name
            report.layers[name] = tree_bytes(content)
            python = content / "python"
            for package in FORBIDDEN_IN_LAYERS:
                if (python / package).exists():
                    report.problems.append(f"layer {name} ships its own {package} (python/{package})")
    layer_refs = built.get("Globals", {}).get("Function", {}).get("Layers", [])
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        code = tree_bytes(build_dir / name)
        layers = res["Properties"].get("Layers", layer_refs)
        with_layers = code + sum(report.layers.get(ref.get("Ref", "") if isinstance(ref, dict) else "", 0) for ref in layers)
        report.functions[name] = (code, with_layers)
        if with_layers > UNZIPPED_LIMIT_BYTES:
            report.problems.append(f"{name}: {with_layers:,} bytes unzipped with its layers (limit {UNZIPPED_LIMIT_BYTES:,})")
    return report


def markdown(report: Report) -> str:
    lines = ["| artefact | unzipped bytes | with its layers | limit |", "|---|---:|---:|---:|"]
    for name, size in sorted(report.layers.items()):
        lines.append(f"| layer `{name}` | {size:,} | | |")
    for name, (code, total) in sorted(report.functions.items()):
        lines.append(f"| function `{name}` | {code:,} | {total:,} | {UNZIPPED_LIMIT_BYTES:,} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if not (args.build_dir / "template.yaml").is_file():
        print(f"{args.build_dir} has no built template: run `make build` first", file=sys.stderr)
        return 2
    report = measure(args.build_dir)
    if args.markdown:
        print(markdown(report))
    else:
        for name, size in sorted(report.layers.items()):
            print(f"layer    {name:<24} {size / 1e6:8.1f} MB unzipped")
        for name, (code, total) in sorted(report.functions.items()):
            print(f"function {name:<24} {code / 1e3:8.1f} kB code, {total / 1e6:6.1f} MB with layers (limit 262.1 MB)")
    for problem in report.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
