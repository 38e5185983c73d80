"""Render a vendored chart offline with Helm's own engine, as the release would apply it.

The engine is Helm's Go SDK through helm-python-sdk (see docs/contributors/helm-render.md): no
binary, no network, no cluster; `lookup` returns nothing, as in `helm template`.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import json
import pathlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import yaml

from policies.rules.base import HELM_RELEASE

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
            f"chart {chart} {version} is pinned but not vendored (no {path}); "
            f"run `{REFRESH} {chart}` to vendor it"
        )
    return path


def files_digest(root: pathlib.Path, files: list[pathlib.Path]) -> str:
    """sha256 over files (path under `root` and bytes). Remembered in the render cache by the files' sizes and
    modification times, as git's index does: a warm synth stats the vendored charts and CRDs instead of reading them."""
    names = [f.relative_to(root).as_posix() for f in files]
    stats = [f.stat() for f in files]
    signature = hashlib.sha256("\0".join([str(root.resolve()), *(f"{n}\0{s.st_size}\0{s.st_mtime_ns}\0{s.st_ino}" for n, s in zip(names, stats))]).encode())
    memo = CACHE / "digests" / f"{signature.hexdigest()[:32]}.txt"
    try:
        return memo.read_text()
    except OSError:
        pass
    digest = hashlib.sha256()
    for name, f in zip(names, files):
        digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        _write_atomic(memo, digest.hexdigest())
    except OSError:  # an unwritable cache only costs reading the files next time
        pass
    return digest.hexdigest()


def chart_digest(path: pathlib.Path) -> str:
    """sha256 over the chart's files (path and bytes), so a changed file invalidates cached renders."""
    return files_digest(path, sorted(p for p in path.rglob("*") if p.is_file()))


def _inputs_hash(release: str, values: dict[str, Any], kube_version: str, api_versions: tuple[str, ...], namespace: str) -> str:
    # Everything the render reads besides the chart: the release's name shapes the objects' names.
    key = json.dumps([release, values, kube_version, sorted(api_versions), namespace], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()


# Helm's own split of a template's output into documents (releaseutil.SplitManifests): a separator may be followed by
# text on the same line (cert-manager's rbac.yaml renders `---# Permission to approve ...`), which YAML's reader rejects.
MANIFEST_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")
# libyaml's safe loader where PyYAML has it: the pure-Python one takes seconds over a chart's large CRDs (KServe's).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _split(manifests: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for template, text in sorted(manifests.items()):
        # NOTES.txt and helpers render to text that Helm never applies.
        if not template.endswith((".yaml", ".yml", ".json")):
            continue
        # Each document trimmed and ended by a line break, as Helm writes it into the release's manifest (a block
        # scalar at a document's end keeps its final newline).
        parts = (part.strip() for part in MANIFEST_SEPARATOR.split(text.strip()))
        docs = [d for part in parts if part and isinstance(d := yaml.load(part + "\n", Loader=SAFE_LOADER), dict) and d]
        if docs:
            out[template] = docs
    return out


REDACTED = "cmVkYWN0ZWQ="  # base64 "redacted"


def _redact(objects: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Secrets' values blanked: a chart's `genCA`/`genSignedCert` makes a fresh private key on every render, which
    has no business in the artefacts (the deployed one is generated again by Helm in the cluster)."""
    for docs in objects.values():
        for obj in docs:
            if obj.get("kind") == "Secret" and obj.get("data"):
                obj["data"] = {k: REDACTED if v else v for k, v in obj["data"].items()}
    return objects


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
    Cached in `cache_dir` by (chart digest, hash of the release name, values, versions and namespace).
    """
    path = chart_dir(chart, version)
    cache_file = None
    if cache_dir is not None:
        key = f"{chart_digest(path)[:16]}-{_inputs_hash(release, values, kube_version, api_versions, namespace)[:32]}"
        cache_file = cache_dir / chart / f"{key}.json"
        if cache_file.is_file():
            return Rendered(release, chart, version, _redact(json.loads(cache_file.read_text())))

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
    objects = _redact(_split(manifests))
    if cache_file is not None:
        _write_atomic(cache_file, json.dumps(objects, sort_keys=True))
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


CACHE = ROOT / "build" / ".render-cache"


def vendored_charts() -> set[str]:
    """Charts whose whole directory SOURCES.yaml vendors: these releases must render."""
    return {
        dest.split("/")[1]
        # libyaml when present: the pure-Python loader takes a sizeable part of a warm synth on this file.
        for entry in yaml.load((ROOT / "schemas" / "SOURCES.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for dest in (entry.get("chart-sources") or {})
    }


def api_versions() -> tuple[str, ...]:
    """The custom resource kinds the platform installs (the vendored CRDs), as Helm's `.Capabilities.APIVersions`."""
    paths = sorted((ROOT / "schemas" / "crds").rglob("*.yaml"))
    digest = files_digest(ROOT / "schemas" / "crds", paths)[:32]
    cached = CACHE / "api-versions" / f"{digest}.json"
    if cached.is_file():
        return tuple(json.loads(cached.read_text()))
    found = set()
    for path in paths:
        # BaseLoader: some CRDs hold the YAML `=` value tag, which the safe loader rejects; names are strings anyway.
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader)):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                for v in spec.get("versions") or []:
                    found |= {f"{spec['group']}/{v['name']}", f"{spec['group']}/{v['name']}/{spec['names']['kind']}"}
    _write_atomic(cached, json.dumps(sorted(found)))
    return tuple(sorted(found))


def _record(stack: str, release: dict, template: str, obj: dict) -> dict:
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    # Helm applies namespaced objects without a namespace into the release's.
    obj = {**obj, "metadata": {"namespace": release["inputs"].get("namespace"), **(obj.get("metadata") or {})}}
    typ = f"kubernetes:{api if '/' in api else 'core/' + api}:{kind}"
    name = (obj.get("metadata") or {}).get("name", "")
    return {
        "type": typ,
        "name": f"{release['inputs']['name']}/{name}",
        "urn": f"urn:pulumi:{stack}::ml-platform::{release['type']}${typ}::{release['inputs']['name']}/{name}",
        "parent": release["urn"],
        "provider": release.get("provider"),
        # Helm applies them as part of the release: they wait for what the release waits for.
        "dependencies": list(release.get("dependencies") or []),
        "property_dependencies": {},
        "custom": True,
        "inputs": obj,
        # Stack rules read outputs; what Helm applies is what the object reports back (as the mocks echo inputs).
        "outputs": obj,
        "chartRendered": {"release": release["inputs"]["name"], "template": template},
    }


def render_releases(records: list[dict], stack: str, cache_dir: Optional[pathlib.Path] = CACHE) -> dict[str, Rendered]:
    """Every release of a vendored chart, rendered; raises ChartNotVendored / RenderError."""
    cluster = next((r for r in records if r["type"] == "aws:eks/cluster:Cluster"), None)
    kube_version = str((cluster or {}).get("inputs", {}).get("version") or "1.35")
    wanted, apis = vendored_charts(), api_versions()
    releases = [r["inputs"] for r in records
                if r["type"] == HELM_RELEASE and str(r["inputs"]["chart"]).rsplit("/", 1)[-1] in wanted]

    def one(i: dict) -> Rendered:
        return render(i["name"], str(i["chart"]).rsplit("/", 1)[-1], i["version"], i.get("values") or {},
                      namespace=str(i.get("namespace")), kube_version=kube_version, api_versions=apis, cache_dir=cache_dir)

    # The native render runs outside the GIL (ctypes), so cold renders use every core; a cache hit costs little.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return {i["name"]: result for i, result in zip(releases, pool.map(one, releases))}


def cached_yaml(obj: dict[str, Any], dump: Callable[[Any], str], text: Optional[str] = None) -> str:
    """`dump(obj)`, kept in the render cache by the object's hash: the charts' CRDs take most of a warm synth's
    artefact writing otherwise. `text`: the object's JSON with sorted keys, where the caller has it already."""
    text = text if text is not None else json.dumps(obj, sort_keys=True)
    cached = CACHE / "yaml" / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.yaml"
    if cached.is_file():
        return cached.read_text()
    out = dump(obj)
    _write_atomic(cached, out)
    return out


def _write_atomic(path: pathlib.Path, text: str) -> None:
    # Synths of several stacks (the test workers) share the cache: a reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rendered_records(stack: str, records: list[dict], rendered: dict[str, Rendered]) -> list[dict]:
    by_name = {r["inputs"]["name"]: r for r in records if r["type"] == HELM_RELEASE}
    return [
        _record(stack, by_name[name], template, obj)
        for name, result in sorted(rendered.items())
        for template, docs in result.objects.items()
        for obj in docs
    ]


EXCEPTIONS = ROOT / "policies" / "chart-exceptions.yaml"


def apply_exceptions(policy: dict, rendered: list[dict]) -> dict:
    """The policy result less the findings on chart-rendered objects that chart-exceptions.yaml accepts."""
    entries = yaml.safe_load(EXCEPTIONS.read_text()) or []
    accepted = {(e["release"], e["object"], e["rule"]): e for e in entries}
    by_urn = {r["urn"]: r for r in rendered}
    kept, excepted = [], []
    for v in policy["violations"]:
        r = by_urn.get(v["urn"])
        key = r and (r["chartRendered"]["release"], r["inputs"]["metadata"].get("name"), v["policy"])
        if key in accepted:
            excepted.append({**v, "reason": accepted[key]["reason"], "upstream": accepted[key]["upstream"]})
        else:
            kept.append(v)
    summary = {**policy["summary"], "mandatory": sum(v["enforcement"] == "mandatory" for v in kept),
               "advisory": sum(v["enforcement"] == "advisory" for v in kept), "excepted": len(excepted)}
    return {**policy, "violations": kept, "excepted": excepted, "summary": summary}
