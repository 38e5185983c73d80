"""The stack-output contract: its JSON Schema, and what counts as an incompatible change."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "stack-outputs.schema.json"


def load(path: Path = SCHEMA) -> dict[str, Any]:
    return json.loads(path.read_text())


def baseline(major: int) -> dict[str, Any]:
    """The contract as first published for a major version; never edited afterwards."""
    return load(HERE / f"baseline-v{major}.schema.json")


def _types(node: dict) -> set:
    t = node.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def incompatibilities(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """What a consumer of `old` would find broken in `new`: removed, no longer guaranteed, retyped or narrowed."""
    found = []
    if _types(old) and _types(new) and not _types(new) <= _types(old):
        found.append(f"{path or '/'}: type {sorted(_types(old))} became {sorted(_types(new))}")
    if "enum" in new and not set(new["enum"]) >= set(old.get("enum", new["enum"])):
        found.append(f"{path}: values {sorted(set(old['enum']) - set(new['enum']))} were removed")
    if "enum" in new and "enum" not in old:
        found.append(f"{path}: now limited to {new['enum']}")
    for key in old.get("required", []):
        if key not in new.get("required", []):
            found.append(f"{path}/{key}: no longer always present")
    for key, sub in old.get("properties", {}).items():
        if key not in new.get("properties", {}):
            found.append(f"{path}/{key}: removed")
        else:
            found += incompatibilities(sub, new["properties"][key], f"{path}/{key}")
    for key in ("additionalProperties", "items"):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            found += incompatibilities(old[key], new[key], f"{path}/{key}")
    for key, sub in old.get("$defs", {}).items():
        if key not in new.get("$defs", {}):
            found.append(f"/$defs/{key}: removed")
        else:
            found += incompatibilities(sub, new["$defs"][key], f"/$defs/{key}")
    return found
