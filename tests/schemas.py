"""Validation of rendered manifests: custom resources against the vendored upstream CRDs (schemas/crds), core
objects against Kubernetes' OpenAPI."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jsonschema
from kubernetes_validate import utils as k8s_schemas
from referencing import Registry, Resource

from infra.lib.upstream import manifest_documents

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "schemas" / "crds"
KUBERNETES_SCHEMA_VERSION = "1.35.0"


@lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every upstream CRD."""
    schemas = {}
    for path in sorted(CRD_DIR.rglob("*.yaml")):
        for doc in manifest_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
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
    _validator(manifest["apiVersion"], manifest["kind"]).validate(manifest)


@lru_cache(maxsize=None)
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    if (api_version, kind) in crd_schemas():
        return jsonschema.Draft7Validator(crd_schemas()[(api_version, kind)])
    # What kubernetes_validate.validate(manifest, version, strict=True) builds, built once per kind: it reads the
    # whole definitions file for every manifest otherwise.
    version = [v for v in k8s_schemas.all_versions() if k8s_schemas.major_minor(v) <= k8s_schemas.major_minor(KUBERNETES_SCHEMA_VERSION)][-1]
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = k8s_schemas.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_SCHEMA_VERSION)
    registry = _definitions(directory) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@lru_cache(maxsize=None)
def _definitions(directory: str) -> Resource:
    return Resource.from_contents(k8s_schemas.schema_contents(f"{directory}/_definitions.json", KUBERNETES_SCHEMA_VERSION))
