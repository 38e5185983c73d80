"""Reads the upstream files vendored in schemas/ (the program installs the Gateway API CRDs from there)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1 reads a bare `=` as the 'value' tag; upstream CRDs use it as a plain string (an enum member)."""


YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def crd_documents(project: str) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition vendored for a project (schemas/crds/<project>), in file order."""
    docs = []
    for path in sorted((SCHEMAS / "crds" / project).glob("*.yaml")):
        docs += [d for d in yaml.load_all(path.read_text(), Loader=YamlLoader) if d and d.get("kind") == "CustomResourceDefinition"]
    return docs
