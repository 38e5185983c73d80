"""Rules over autoscalers: an HPA's custom metric is one an adapter serves, and a VPA and an HPA never act on the same resource.

Custom metrics are served by prometheus-adapter: each rule of its config turns Prometheus series into metric names
(`seriesQuery` finds the series, `seriesFilters` and `name.matches` keep some, `name.as` renames them) and maps
series labels to Kubernetes resources (`resources.overrides` or `resources.template`). These functions evaluate
that naming the way the adapter does (pkg/naming/metric_namer.go), on the rules a release's values declare.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Optional

from .base import HELM_RELEASE, MANDATORY, dig, stack_rule

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
VPA = "kubernetes:autoscaling.k8s.io/v1:VerticalPodAutoscaler"
ADAPTER_CHART = "prometheus-adapter"
# A series selector that names its metric: `name{...}` or `{__name__="name", ...}`.
_NAMED_SELECTOR = re.compile(r'^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{.*\})?\s*$|__name__\s*=\s*"([^"]+)"')
# Go's regexp.Expand template references: $name, ${name}, and $$ for a dollar.
_EXPAND = re.compile(r"\$(?:\{(\w+)\}|(\w+)|\$)")


def series_name(series_query: str) -> Optional[str]:
    """The one metric a series query selects, or None when it selects by pattern (its names depend on what exists)."""
    m = _NAMED_SELECTOR.search(series_query)
    return (m.group(1) or m.group(3)) if m else None


def _expand(template: str, match: re.Match) -> str:
    def ref(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name is None:
            return "$"
        try:
            return match.group(int(name) if name.isdigit() else name) or ""
        except IndexError:
            return ""  # Go expands an unknown group to nothing

    return _EXPAND.sub(ref, template)


def metric_name(rule: dict[str, Any], series: str) -> Optional[str]:
    """The name the adapter gives `series` under `rule`, or None if the rule drops it."""
    for f in rule.get("seriesFilters") or []:
        if ("is" in f and not re.search(f["is"], series)) or ("isNot" in f and re.search(f["isNot"], series)):
            return None
    matches = re.compile(dig(rule, "name", "matches") or ".*")
    found = matches.search(series)
    if not found:
        return None
    template = dig(rule, "name", "as") or {0: "$0", 1: "$1"}.get(matches.groups)
    return _expand(template, found) if template else None  # more groups and no `as`: the adapter rejects the rule


def maps_resource(rule: dict[str, Any], resource: str) -> bool:
    """Whether the rule's series labels name objects of this resource (pods, namespaces, deployments...)."""
    if dig(rule, "resources", "template"):
        return True
    singular = resource.lower().removesuffix("s")
    return any(str(o.get("resource", "")).lower().removesuffix("s") == singular for o in (dig(rule, "resources", "overrides") or {}).values())


def served(rules: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Metric name -> the rules that serve it, for rules whose series query names its metric."""
    names: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        series = series_name(str(rule.get("seriesQuery", "")))
        name = metric_name(rule, series) if series else None
        if name:
            names.setdefault(name, []).append(rule)
    return names


def adapter_rules(resources) -> list[dict[str, Any]]:
    """The explicit rules of every prometheus-adapter release. Its default rules (on unless `rules.default: false`)
    name whatever series happen to exist, which no preview can see: they prove nothing."""
    return [
        rule
        for r in resources
        if r.resource_type == HELM_RELEASE and str(r.props.get("chart", "")).rsplit("/", 1)[-1] == ADAPTER_CHART
        for rule in dig(r.props, "values", "rules", "custom", default=[]) or []
    ]


def custom_metrics(hpa_props: dict) -> Iterator[tuple[str, str]]:
    """(metric name, resource its series must map to) of each Pods or Object metric the HPA scales on."""
    for m in dig(hpa_props, "spec", "metrics", default=[]) or []:
        if m.get("type") == "Pods":
            yield dig(m, "pods", "metric", "name"), "pods"
        elif m.get("type") == "Object":
            yield dig(m, "object", "metric", "name"), str(dig(m, "object", "describedObject", "kind", default=""))


@stack_rule(
    "hpa-custom-metric-served",
    "Every HorizontalPodAutoscaler that scales on a custom (Pods or Object) metric names one a prometheus-adapter rule of the stack serves for that kind of object; otherwise it never scales.",
    "Scale on one of the metrics the platform serves (autoscaling.customMetric lists them), or add an adapter rule that produces the name.",
    MANDATORY,
)
def hpa_custom_metric_served(resources, settings):
    names = served(adapter_rules(resources))
    for r in resources:
        if r.resource_type != HPA:
            continue
        for name, resource in custom_metrics(r.props):
            if not names.get(name):
                yield f"custom metric {name!r} is served by no prometheus-adapter rule of the stack; served: {sorted(names)}", r.urn
            elif not any(maps_resource(rule, resource) for rule in names[name]):
                yield f"custom metric {name!r} is served, but not for {resource}", r.urn


# A VPA without updatePolicy runs in the CRD's default mode, Recreate: it changes requests.
ACTING_DEFAULT = "Recreate"
VPA_DEFAULT_RESOURCES = {"cpu", "memory"}


def vpa_controls(props: dict) -> set[str]:
    """The resources a VPA changes on running or new pods: none in mode Off, else its containers' controlled resources."""
    if dig(props, "spec", "updatePolicy", "updateMode", default=ACTING_DEFAULT) == "Off":
        return set()
    policies = dig(props, "spec", "resourcePolicy", "containerPolicies", default=[]) or []
    if not policies:
        return set(VPA_DEFAULT_RESOURCES)
    return {res for p in policies if p.get("mode") != "Off" for res in p.get("controlledResources") or VPA_DEFAULT_RESOURCES}


def hpa_resources(props: dict) -> set[str]:
    """The resources (cpu, memory) whose utilisation the HPA scales on."""
    return {
        dig(m, key, "name")
        for m in dig(props, "spec", "metrics", default=[]) or []
        for key in ("resource", "containerResource")
        if m.get("type") in ("Resource", "ContainerResource") and dig(m, key, "name")
    }


def _target(props: dict, ref: str) -> tuple:
    target = dig(props, "spec", ref) or {}
    return dig(props, "metadata", "namespace", default="default"), target.get("kind"), target.get("name")


@stack_rule(
    "vpa-not-fighting-hpa",
    "No VerticalPodAutoscaler that changes requests (any mode but Off) controls a resource an HPA of the same workload scales on: utilisation is relative to requests, so the two would chase each other.",
    "Keep the VPA in mode Off (recommendations only), or scale the HPA on a custom metric (autoscaling.customMetric).",
    MANDATORY,
)
def vpa_not_fighting_hpa(resources, settings):
    hpas: dict[tuple, set[str]] = {}
    for r in resources:
        if r.resource_type == HPA:
            hpas.setdefault(_target(r.props, "scaleTargetRef"), set()).update(hpa_resources(r.props))
    for r in resources:
        if r.resource_type == VPA:
            both = vpa_controls(r.props) & hpas.get(_target(r.props, "targetRef"), set())
            if both:
                mode = dig(r.props, "spec", "updatePolicy", "updateMode", default=ACTING_DEFAULT)
                yield f"the VPA ({mode}) and an HPA of {'/'.join(map(str, _target(r.props, 'targetRef')))} both act on {', '.join(sorted(both))}", r.urn
