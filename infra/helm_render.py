"""Render a vendored chart offline with Helm's own engine, as the release would apply it.

The engine is Helm's Go SDK through helm-python-sdk (see docs/contributors/helm-render.md): no
binary, no network, no cluster; `lookup` returns nothing, as in `helm template`.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass
from typing import Any, Optional

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART_SOURCES = ROOT / "schemas" / "chart-sources"
REFRESH = ".venv/bin/python schemas/refresh.py --charts"


class ChartNotVendored(Exception):
    """A pinned chart version with no vendored source: the synth exits 2 with this message."""


class RenderError(Exception):
    """Helm failed to render a release: names the release and carries Helm's message (template and line)."""


@dataclass(frozen=True)
class Rendered:
    release: str
    chart: str
    version: str
    # Template path -> the objects rendered from it, in Helm's order.
    objects: dict[str, list[dict[str, Any]]]


def chart_dir(chart: str, version: str) -> pathlib.Path:
    path = CHART_SOURCES / chart / version
    if not (path / "Chart.yaml").is_file():
        raise ChartNotVendored(
            f"chart {chart} {version} is pinned but not vendored under {path.relative_to(ROOT)}; "
            f"run `{REFRESH} {chart}` to vendor it"
        )
    return path


def chart_digest(path: pathlib.Path) -> str:
    """sha256 over the chart's files (path and bytes), so a changed file invalidates cached renders."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def _values_hash(values: dict[str, Any], kube_version: str, api_versions: tuple[str, ...], namespace: str) -> str:
    key = json.dumps([values, kube_version, sorted(api_versions), namespace], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()


def _split(manifests: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for template, text in sorted(manifests.items()):
        # NOTES.txt and helpers render to text that Helm never applies.
        if not template.endswith((".yaml", ".yml", ".json")):
            continue
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d]
        if docs:
            out[template] = docs
    return out


def render(
    release: str,
    chart: str,
    version: str,
    values: dict[str, Any],
    *,
    namespace: str,
    kube_version: str,
    api_versions: tuple[str, ...] = (),
    cache_dir: Optional[pathlib.Path] = None,
) -> Rendered:
    """The release's objects, rendered by Helm with `values` over the chart's defaults.

    A `None` in `values` is a JSON null to Helm, which deletes the chart's default for that key.
    Cached in `cache_dir` by (chart digest, values hash).
    """
    path = chart_dir(chart, version)
    cache_file = None
    if cache_dir is not None:
        key = f"{chart_digest(path)[:16]}-{_values_hash(values, kube_version, api_versions, namespace)[:32]}"
        cache_file = cache_dir / chart / f"{key}.json"
        if cache_file.is_file():
            return Rendered(release, chart, version, json.loads(cache_file.read_text()))

    import helm_python
    from helm_python import _native

    opts = {
        "name": release,
        "namespace": namespace,
        "is_install": True,
        "kube_version": f"v{kube_version}.0" if kube_version.count(".") == 1 else kube_version,
        "api_versions": list(api_versions),
    }
    try:
        with helm_python.Chart.load(str(path)) as loaded:
            # The wrapper's render() does not expose kube_version/api_versions; the native call takes them.
            manifests = json.loads(
                _native.call_string("helm_render", loaded._raw(), json.dumps(values), json.dumps(opts))
            )
    except helm_python.HelmError as e:  # type: ignore[attr-defined]
        raise RenderError(f"release {release} (chart {chart} {version}) failed to render: {e}") from e
    objects = _split(manifests)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(objects, sort_keys=True))
    return Rendered(release, chart, version, objects)


def containers(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(template, object, container) for every container and init container of every pod template."""
    found = []
    for template, docs in rendered.objects.items():
        for obj in docs:
            spec = obj.get("spec") or {}
            pod = (spec.get("template") or {}).get("spec") or (
                ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            ).get("spec")
            if not pod:
                continue
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                found.append((template, obj, c))
    return found
