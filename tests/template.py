"""Read template.yaml so tests build AWS resources from it (the loader lives in ``local.template``,
which the local stack uses too)."""

from __future__ import annotations

from local.template import ROOT, bucket_lifecycle, resource, table_kwargs, template

__all__ = ["ROOT", "bucket_lifecycle", "resource", "table_kwargs", "template"]
