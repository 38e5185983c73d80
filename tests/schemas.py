"""Validation of rendered manifests: custom resources against the vendored upstream CRDs (schemas/crds), core
objects against Kubernetes' OpenAPI."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "schemas" / "crds"
KUBERNETES_SCHEMA_VERSION = "1.35.0"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1 reads a bare `=` as the 'value' tag; upstream CRDs use it as a plain string (an enum member)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every upstream CRD."""
    schemas = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def is_custom(manifest: dict) -> bool:
    return (manifest["apiVersion"], manifest["kind"]) in crd_schemas()


def validate(manifest: dict) -> None:
    """Raises if the manifest does not validate against its schema."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in crd_schemas():
        jsonschema.Draft7Validator(crd_schemas()[key]).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_SCHEMA_VERSION, strict=True)
