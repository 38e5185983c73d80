"""Reads the upstream files vendored in schemas/ (the program installs the Gateway API CRDs from there)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# Parsed copies of large vendored manifests, keyed by the file's digest: JSON reads ten times faster than YAML.
PARSE_CACHE = SCHEMAS.parent / "build" / ".upstream-cache"


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1 reads a bare `=` as the 'value' tag; upstream CRDs use it as a plain string (an enum member)."""


YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def crd_files(project: str) -> list[str]:
    """The vendored CRD files of a project, relative to the project root (where the engine runs the program), for a
    ConfigGroup to apply unmodified."""
    return [str(p.relative_to(SCHEMAS.parent)) for p in sorted((SCHEMAS / "crds" / project).glob("*.yaml"))]


def crd_documents(project: str) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition vendored for a project (schemas/crds/<project>), in file order."""
    docs = []
    for path in sorted((SCHEMAS / "crds" / project).glob("*.yaml")):
        docs += [d for d in yaml.load_all(path.read_text(), Loader=YamlLoader) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


def manifest_documents(path: Path) -> tuple[dict[str, Any], ...]:
    """Every document of a vendored multi-document manifest, parsed from the YAML once and then read from a JSON
    copy keyed by the file's sha256 (a changed file is parsed again; an unwritable cache only costs the parse)."""
    data = path.read_bytes()
    cached = PARSE_CACHE / f"{path.stem}-{hashlib.sha256(data).hexdigest()}.json"
    try:
        return tuple(json.loads(cached.read_bytes()))
    except (OSError, ValueError):
        pass
    docs = tuple(d for d in yaml.load_all(data, Loader=YamlLoader) if d)
    try:
        PARSE_CACHE.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: parallel synths never read a half-written copy.
        with tempfile.NamedTemporaryFile("w", dir=PARSE_CACHE, delete=False, suffix=".tmp") as tmp:
            json.dump(list(docs), tmp)
        os.replace(tmp.name, cached)
    except OSError:
        pass
    return docs


def object_group(name: str, objects: list[dict[str, Any]], opts: pulumi.ResourceOptions) -> k8s.yaml.v2.ConfigGroup:
    """Objects the provider applies one by one (each its own resource, awaited and judged alone), handed to it as one
    manifest of JSON documents: a string crosses to the engine in a tenth of the time the same objects take as nested
    values. Objects holding an output (an endpoint) are written once it resolves; the provider applies a group only
    once all of its inputs are known, objects or text alike (yaml/v2 ConfigGroup's Construct), so a preview where the
    output is unknown leaves the group's objects out either way."""
    def document(obj: dict[str, Any]) -> pulumi.Input[str]:
        # Characters as they are: YAML readers refuse JSON's escaped surrogate pairs (a character beyond U+FFFF).
        try:
            return json.dumps(obj, ensure_ascii=False)
        except TypeError:  # an Output inside
            return pulumi.Output.json_dumps(obj, ensure_ascii=False)

    manifest = pulumi.Output.all(*map(document, objects)).apply(lambda docs: "".join(f"---\n{d}\n" for d in docs))
    return k8s.yaml.v2.ConfigGroup(name, yaml=manifest, opts=opts)


def documents(text: str) -> list[dict[str, Any]]:
    """The documents of a manifest: JSON ones (object_group's) read as JSON, anything else as YAML."""
    try:
        return [json.loads(d) for d in text.split("---\n") if d.strip()]
    except ValueError:
        return [d for d in yaml.load_all(text, Loader=YamlLoader) if d]
