"""The vendored upstream files are the pinned versions, and the program only sets Helm values the pinned charts have."""
from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from typing import Any, Iterator

import pytest
import yaml

from infra.config.pins import PINS
from tests.conftest import ROOT, STACKS, synth_of

SCHEMAS = ROOT / "schemas"
sys.path.insert(0, str(SCHEMAS))
import refresh  # noqa: E402

SOURCES = yaml.safe_load((SCHEMAS / "SOURCES.yaml").read_text())
LOCK = yaml.safe_load((SCHEMAS / "VENDORED.yaml").read_text())
# Chart dependencies whose values are set under the parent chart's key of the same name.
SUBCHARTS = {
    "kube-prometheus-stack": {e["chart"]: f"charts/{e['chart']}/{e['version']}/values.yaml" for e in SOURCES if e.get("dependency-of") == "kube-prometheus-stack"},
    "gpu-operator": {"node-feature-discovery": "charts/gpu-operator/{version}/charts/node-feature-discovery/values.yaml"},
}


def test_vendored_files_are_exactly_what_the_pins_name():
    planned = {item["file"]: item for item in refresh.planned()}
    charts = {item["dir"]: item for item in refresh.planned_charts()}
    rendered = {item["file"]: item for item in refresh.planned_rendered()}
    assert set(LOCK) == set(planned) | set(charts) | set(rendered), "run schemas/refresh.py after changing a pin or SOURCES.yaml"
    for name, item in charts.items():
        assert LOCK[name] == refresh.chart_lock_entry(item), f"{name} differs from upstream: run schemas/refresh.py --charts"
    for name, item in rendered.items():
        assert LOCK[name] == refresh.render_lock_entry(item), f"{name} differs from its rendering: run schemas/refresh.py --render"
    for name, item in planned.items():
        entry = LOCK[name]
        assert (entry["project"], entry["ref"], entry["version"]) == (item["project"], item["ref"], item["version"]), name
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == entry["sha256"], f"{name} differs from upstream"
    present = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*") if p.is_file() and p.parent != SCHEMAS}
    present = {p for p in present if not any(p.startswith(d + "/") for d in charts)}
    assert present == set(planned) | set(rendered), f"files nobody vendors: {sorted(present - set(planned))}"


def test_chart_dependencies_are_vendored_at_the_versions_the_parent_chart_names():
    chart = yaml.safe_load((SCHEMAS / f"charts/kube-prometheus-stack/{PINS['kube-prometheus-stack']}/Chart.yaml").read_text())
    wanted = {d["name"]: d["version"] for d in chart["dependencies"] if d["name"] in SUBCHARTS["kube-prometheus-stack"]}
    vendored = {e["chart"]: e["version"] for e in SOURCES if e.get("dependency-of") == "kube-prometheus-stack"}
    assert wanted == vendored


def test_config_defaults_are_the_pins():
    from infra.config import AcceleratorsConfig, KarpenterConfig, MeshConfig, ObservabilityConfig

    assert KarpenterConfig().version == PINS["karpenter"]
    assert AcceleratorsConfig().gpu_operator.version == PINS["gpu-operator"]
    assert MeshConfig().istio_version == PINS["istio"]
    assert ObservabilityConfig().kube_prometheus_stack_version == PINS["kube-prometheus-stack"]


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override if override is not None else base


@lru_cache(maxsize=None)
def chart_defaults(chart: str, version: str) -> dict:
    path = SCHEMAS / "charts" / chart / version / "values.yaml"
    assert path.exists(), f"no vendored values for chart {chart} {version}: pin it in infra/config/pins.py and run schemas/refresh.py"
    defaults = yaml.safe_load(path.read_text()) or {}
    # Istio's charts keep their defaults under this key (a Helm workaround); users set them at the top level.
    defaults = _merge(defaults.pop("_internal_defaults_do_not_set", {}), defaults)
    for name, sub in SUBCHARTS.get(chart, {}).items():
        # The parent's own overrides for the dependency win over the dependency's defaults.
        defaults[name] = _merge(yaml.safe_load((SCHEMAS / sub.format(version=version)).read_text()) or {}, defaults.get(name))
    return defaults


# Values a chart passes through whole: Kubernetes objects (their fields are Kubernetes'), Istio's MeshConfig,
# Alertmanager's configuration, argo-cd's `configs.cm` (argocd-cm's data). The chart reads no keys below them.
PASSED_THROUGH = {"nodeSelector", "labels", "annotations", "podAnnotations", "podLabels", "resources", "securityContext",
                  "podSecurityContext", "affinity", "meshConfig", "cm"}


def unknown_keys(values: Any, defaults: Any, path: tuple = ()) -> Iterator[str]:
    """Keys the program sets that the chart's defaults do not have. An empty map, a non-map default or a
    passed-through value is free-form (nodeSelector, a list of tolerations, resources), so what goes under it
    is the chart's to pass on."""
    if not isinstance(values, dict) or not isinstance(defaults, dict) or not defaults or (path and path[-1] in PASSED_THROUGH):
        return
    for key, value in values.items():
        if key not in defaults:
            yield ".".join((*path, key))
        else:
            yield from unknown_keys(value, defaults[key], (*path, key))


# Keys a chart documents only as a commented-out example in its values.yaml (its templates read them):
# (chart, key path) -> the commented line, which must stand in the vendored file.
COMMENTED_OUT = {
    ("kube-prometheus-stack", "grafana.persistence.storageClassName"): ("grafana", "  # storageClassName: default"),
    # Documented next to "If version is not specified, then default is to use chart.AppVersion".
    ("gpu-operator", "operator.version"): (None, '  #version: ""'),
    ("gpu-operator", "validator.version"): (None, '  #version: ""'),
    # Documented next to "If no value is set, the chart's appVersion is used" (v0.0.0 at the tag).
    ("cert-manager", "image.tag"): (None, "  # tag: vX.Y.Z"),
    **{("cert-manager", f"{part}.image.tag"): (None, "    # tag: vX.Y.Z") for part in ("webhook", "cainjector", "acmesolver", "startupapicheck")},
}


def commented_out(chart: str, version: str, key: str) -> bool:
    documented = COMMENTED_OUT.get((chart, key))
    if documented is None:
        return False
    source, line = documented
    sub = SUBCHARTS.get(chart, {}).get(source)
    path = SCHEMAS / (sub.format(version=version) if sub else f"charts/{chart}/{version}/values.yaml")
    return line in path.read_text().splitlines()


@pytest.mark.parametrize("stack", STACKS)
def test_every_helm_value_the_program_sets_exists_in_the_pinned_chart(stack):
    for record in synth_of(stack).of_type("kubernetes:helm.sh/v3:Release"):
        inputs = record["inputs"]
        chart = str(inputs["chart"]).rsplit("/", 1)[-1]
        missing = [k for k in unknown_keys(inputs.get("values") or {}, chart_defaults(chart, inputs["version"])) if not commented_out(chart, inputs["version"], k)]
        assert missing == [], f"{chart} {inputs['version']} has no such values: {missing}"


@pytest.mark.parametrize("stack", STACKS)
def test_values_validate_against_the_charts_own_schema_where_it_ships_one(stack):
    import json

    import jsonschema

    checked = 0
    for record in synth_of(stack).of_type("kubernetes:helm.sh/v3:Release"):
        inputs = record["inputs"]
        schema = SCHEMAS / "charts" / str(inputs["chart"]).rsplit("/", 1)[-1] / inputs["version"] / "values.schema.json"
        if schema.exists():
            jsonschema.Draft7Validator(json.loads(schema.read_text())).validate(inputs.get("values") or {})
            checked += 1
    assert checked, "the gateway chart ships a schema"


def test_the_check_catches_a_typo():
    defaults = chart_defaults("neuron-helm-chart", PINS["neuron-helm-chart"])
    assert list(unknown_keys({"devicePlugin": {"enabeld": True, "tolerations": [{"key": "x"}]}, "npd": {"enabled": False}}, defaults)) == ["devicePlugin.enabeld"]
    assert list(unknown_keys({"scheduler": {"customScheduler": {"nodeSelector": {"any": "label"}}}}, defaults)) == []


def test_an_object_group_hands_the_provider_a_manifest_its_yaml_reader_reads_as_the_objects(stack):
    """A group's objects are a manifest of JSON documents: read as YAML (the provider's reader), they are the objects
    the synth records as the group's children, endpoints resolved."""
    from infra.lib.upstream import YamlLoader

    s = synth_of(stack) if isinstance(stack, str) else stack
    groups = [r for r in s.resources if r["type"] == "kubernetes:yaml/v2:ConfigGroup" and "yaml" in r["inputs"]]
    assert groups
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    for group in groups:
        docs = [d for d in yaml.load_all(group["inputs"]["yaml"], Loader=YamlLoader) if d]
        assert sorted(docs, key=key) == sorted((r["inputs"] for r in s.resources if r["parent"] == group["urn"]), key=key), group["name"]
    database_host = next(r for r in s.resources if r["type"] == "aws:rds/cluster:Cluster")["outputs"]["endpoint"]
    assert any(database_host in g["inputs"]["yaml"] for g in groups)
