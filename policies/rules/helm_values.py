"""Helm values the program sets that the pinned chart never reads (dead configuration).

A key counts as read when a template of the vendored chart (or of the subchart the key is under) references it, a
parent of it or a key below it (`.Values.a.b`, `index .Values "a" "b"`, `pick .Values "a"`, `dig "a" "b" ... .Values`,
`hasKey`/`get`), or when the chart's Chart.yaml names it as a dependency's condition. A reference to a parent counts
for the whole map (`toYaml .Values.resources` reads every key under it), so the rule errs towards "read".
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

from .base import ADVISORY, HELM_RELEASE, resource_rule

CHART_SOURCES = Path(__file__).resolve().parents[2] / "schemas" / "chart-sources"
LOCK = Path(__file__).resolve().parents[2] / "schemas" / "VENDORED.yaml"
# Scanning the monitoring chart's 400 files takes longer than the rest of the rule: kept by the vendoring lock.
CACHE = Path(__file__).resolve().parents[2] / "build" / ".render-cache" / "helm-values"

# Keys the published chart reads but the vendored one cannot show: (chart, version, key) -> why. Reviewed like
# policies/chart-exceptions.yaml; tests/test_helm_values.py fails on an entry nothing needs any more.
NOT_IN_THE_TAG: dict[tuple[str, str, str], str] = {
    ("external-secrets", "2.9.0", "installCRDs"): (
        "read by the CRD templates the release build generates into the published package; at the helm-chart-2.9.0 tag "
        "deploy/charts/external-secrets/templates/crds/ holds only a README"
    ),
}

_PATH = r"\$?\.Values((?:\.[A-Za-z_]\w*)*)"
_KEYS = r'((?:"[^"]*"\s*)+)'
_DOTTED = re.compile(_PATH + r"(?![\w.])")
_INDEXED = re.compile(r"(?:index|pick|hasKey|get)\s+\(?" + _PATH + r"\)?\s+" + _KEYS)
_DUG = re.compile(r"dig\s+" + _KEYS + r"\S+\s+\(?" + _PATH + r"\)?")
_TEXT = (".yaml", ".yml", ".tpl", ".txt", ".json")
Path_ = tuple[str, ...]


def _split(dotted: str) -> Path_:
    return tuple(p for p in dotted.split(".") if p)


def _quoted(keys: str) -> list[str]:
    return re.findall(r'"([^"]*)"', keys)


def _chart_references(chart: Path) -> set[Path_]:
    """Value paths one chart's templates and files read, from the chart's root (its subcharts not included)."""
    found: set[Path_] = set()
    for folder in ("templates", "files"):
        for f in (chart / folder).rglob("*") if (chart / folder).is_dir() else ():
            if not f.is_file() or f.suffix not in _TEXT:
                continue
            text = f.read_text(errors="replace")
            found.update(_split(m.group(1)) for m in _DOTTED.finditer(text))
            for m in _INDEXED.finditer(text):
                base, keys = _split(m.group(1)), _quoted(m.group(2))
                # index walks down the keys; pick, hasKey and get each name a key of the same map.
                if m.group(0).startswith("index"):
                    found.add(base + tuple(keys))
                else:
                    found.update(base + (k,) for k in keys)
            found.update(_split(m.group(2)) + tuple(_quoted(m.group(1))) for m in _DUG.finditer(text))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text()) or {}
    for dep in meta.get("dependencies") or []:
        found.update(_split(c.strip()) for c in str(dep.get("condition") or "").split(",") if c.strip())
        found.update(("tags", t) for t in dep.get("tags") or [])
    found.discard(())
    return found


@lru_cache(maxsize=1)
def _lock_stamp() -> str:
    # schemas/VENDORED.yaml locks every vendored chart's tree digest (tests/test_upstream.py holds the files to it).
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:32]


@lru_cache(maxsize=None)
def references(chart: str, version: str) -> frozenset[Path_]:
    """Every value path the vendored chart reads, its subcharts' under their key; `global` is shared by all."""
    root = CHART_SOURCES / chart / version
    if not (root / "Chart.yaml").is_file():
        return frozenset()
    cached = CACHE / f"{chart}-{version}-{_lock_stamp()}.json"
    if cached.is_file():
        return frozenset(tuple(r) for r in json.loads(cached.read_text()))

    def walk(path: Path, prefix: Path_) -> Iterator[Path_]:
        for ref in _chart_references(path):
            yield ref if ref[0] == "global" else prefix + ref
        for sub in sorted((path / "charts").iterdir()) if (path / "charts").is_dir() else ():
            if (sub / "Chart.yaml").is_file():
                yield from walk(sub, prefix + (sub.name,))

    found = frozenset(walk(root, ()))
    try:  # the pack also runs where the tree is read-only: the cache is an optimisation only
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(found)))
        os.replace(tmp, cached)
    except OSError:
        pass
    return found


def _leaves(values: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from _leaves(value, path + (str(key),))
    elif path:
        yield path


def dead_values(chart: str, version: str, values: dict) -> list[str]:
    """The program's value paths (dotted) that no template of the chart reads; empty for a chart not vendored."""
    refs = references(chart, version)
    if not refs:
        return []
    above = _prefixes(chart, version)
    # Read: a reference at the key or above it, or one below it (the key is a prefix of a reference).
    return [".".join(leaf) for leaf in _leaves(values)
            if not any(leaf[:n] in refs for n in range(1, len(leaf) + 1)) and leaf not in above
            and (chart, version, ".".join(leaf)) not in NOT_IN_THE_TAG]


@lru_cache(maxsize=None)
def _prefixes(chart: str, version: str) -> frozenset[Path_]:
    return frozenset(r[:n] for r in references(chart, version) for n in range(1, len(r)))


@resource_rule(
    "helm-values-read",
    "Every value a Helm release sets is read by a template of the pinned chart (vendored under schemas/chart-sources/): "
    "a key no template references changes nothing and misleads whoever reads the program.",
    "Remove the key from the release's values, or move it to where the pinned chart reads it (see the chart's values.yaml "
    "and templates at schemas/chart-sources/<chart>/<version>/).",
    ADVISORY,
    [HELM_RELEASE],
)
def helm_values_read(props, args):
    chart = str(props.get("chart", "")).rsplit("/", 1)[-1]
    dead = dead_values(chart, str(props.get("version", "")), props.get("values") or {})
    if dead:
        yield f"release {props.get('name')}: no template of chart {chart} {props.get('version')} reads " + ", ".join(dead)
