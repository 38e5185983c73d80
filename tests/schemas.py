"""Validation of rendered manifests: custom resources against the vendored upstream CRDs (schemas/crds), core
objects against Kubernetes' OpenAPI."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from infra.lib.upstream import YamlLoader

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "schemas" / "crds"
KUBERNETES_SCHEMA_VERSION = "1.35.0"


@lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every upstream CRD."""
    schemas = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=YamlLoader):
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
