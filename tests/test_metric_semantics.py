"""Dashboards and alerts measure what their titles say, checked against the pinned upstream sources in schemas/upstream:
the labels dcgm-exporter really puts on its series, and how Istio's sidecars really expose their metrics."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

import pytest
import yaml

from components.observability import alert_rules, dashboards
from infra.config import ObservabilityConfig
from infra.config.pins import PINS
from infra.lib.llm_engines import LLM_LABEL
from infra.lib.metrics import CUSTOM_METRICS, VLLM_SERIES
from tests.conftest import ROOT, STACKS, synth_of

UPSTREAM = ROOT / "schemas" / "upstream"
SOURCES = yaml.safe_load((ROOT / "schemas" / "SOURCES.yaml").read_text())
ISTIO = UPSTREAM / "istio" / PINS["istio"]

# Labels prometheus-operator gives every ServiceMonitor target (its promcfg.go: namespace, service, pod, container,
# endpoint, job) and Prometheus itself (instance). Not vendored: the file is 180 kB and the pinned v0.93.1 is not in
# the mirror; the CRD's honorLabels text (vendored) says the exporter's label loses a collision unless honoured.
SERVICE_MONITOR_TARGET_LABELS = {"namespace", "service", "pod", "container", "endpoint", "job", "instance"}


# -- dcgm-exporter -------------------------------------------------------------------------------------------------


def exporter_versions() -> list[str]:
    return [
        "main" if len(e["version"]) == 40 else e["version"]
        for e in SOURCES
        if e.get("chart") == "dcgm-exporter"
    ]


def exporter_labels(version: str) -> tuple[set[str], dict[str, str]]:
    """(labels of a GPU series, the pod attributes by role) as the exporter's source renders them."""
    root = UPSTREAM / "dcgm-exporter" / version / "internal/pkg"
    template = (root / "rendermetrics/render_metrics.go").read_text()
    [gpu_line] = [line for line in template.splitlines() if line.startswith('{{ $counter.FieldName }}{gpu="')]
    labels = set(re.findall(r'(\w+)="\{\{', gpu_line))
    attributes = dict(re.findall(r'\b(pod|namespace|container)Attribute\s*=\s*"(\w+)"', (root / "transformation/const.go").read_text()))
    assert set(attributes) == {"pod", "namespace", "container"}, version
    return labels | set(attributes.values()), attributes


def dcgm_monitor(stack: str) -> dict[str, Any]:
    return synth_of(stack).result.manifests["servicemonitor--monitoring--dcgm-exporter.yaml"]


def stored_labels(monitor: dict[str, Any], exporter: set[str]) -> tuple[set[str], dict[str, str]]:
    """The labels Prometheus stores on a DCGM series: the target's, relabelled ones, and the exporter's, renamed with
    the exported_ prefix where they collide with the target's (honorLabels false)."""
    [endpoint] = monitor["spec"]["endpoints"]
    target = SERVICE_MONITOR_TARGET_LABELS | {r["targetLabel"] for r in endpoint.get("relabelings", []) if "targetLabel" in r}
    renamed = {
        label: (f"exported_{label}" if label in target and not endpoint.get("honorLabels") else label) for label in exporter
    }
    return target | set(renamed.values()), renamed


# label_replace(v, "dst", "$1", "src", regex)
LABEL_REPLACE = re.compile(r',\s*"(\w+)",\s*"\$1",\s*"(\w+)"')


def labels_read(expr: str) -> set[str]:
    """Every label a PromQL expression groups by, matches on or copies from."""
    found = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"DCGM_\w+\{([^}]*)\}", expr):
        found |= set(re.findall(r"(\w+)\s*(?:=|!=|=~|!~)\s*\"", matchers))
    found |= {src for _, src in LABEL_REPLACE.findall(expr)}
    return found


def labels_produced(expr: str) -> set[str]:
    """The labels of an aggregated expression's result: its outermost grouping and what label_replace adds."""
    groups = re.findall(r"\bby \(([^)]*)\)", expr)
    produced = {label.strip() for label in groups[0].split(",")} if groups else set()
    return produced | {dst for dst, _ in LABEL_REPLACE.findall(expr)}


def gpu_queries() -> list[tuple[str, str, set[str]]]:
    """(where, expression, labels it shows) of every panel and alert that reads DCGM series."""
    queries = []
    for panel in dashboards()["gpu"]["panels"]:
        for target in panel["targets"]:
            queries.append((f"panel {panel['title']!r}", target["expr"], set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))))
    for group in alert_rules(ObservabilityConfig())["groups"]:
        for rule in group["rules"]:
            if "DCGM_" in rule["expr"]:
                queries.append((f"alert {rule['alert']}", rule["expr"], set(re.findall(r"\$labels\.(\w+)", rule["annotations"]["summary"]))))
    return queries


def test_the_exporter_is_vendored_at_both_sides_of_its_label_rename():
    """The operator's pinned image is 4.6.0-4.8.3; the mirror has the release before it and main after the rename of
    Hostname to hostname. Only labels both render are safe to read."""
    values = yaml.safe_load((ROOT / "schemas/charts/gpu-operator" / PINS["gpu-operator"] / "values.yaml").read_text())
    assert values["dcgmExporter"]["version"].startswith("4.6.0-4.8.3")
    versions = exporter_versions()
    assert len(versions) == 2
    before, after = (exporter_labels(v)[0] for v in versions)
    assert {"Hostname", "hostname"} & (before ^ after) == {"Hostname", "hostname"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_gpu_panel_and_alert_reads_labels_the_series_carry(stack):
    monitor = dcgm_monitor(stack)
    exporter = set.intersection(*(exporter_labels(v)[0] for v in exporter_versions()))
    stored, _ = stored_labels(monitor, exporter)
    for where, expr, shown in gpu_queries():
        assert labels_read(expr) <= stored, f"{where} reads {sorted(labels_read(expr) - stored)}, not on the series: {expr}"
        assert shown <= labels_produced(expr), f"{where} shows {sorted(shown - labels_produced(expr))}, not in its result"


@pytest.mark.parametrize("stack", STACKS)
def test_by_pod_means_the_workload_using_the_gpu_not_the_exporter(stack):
    monitor = dcgm_monitor(stack)
    for version in exporter_versions():
        labels, attributes = exporter_labels(version)
        _, renamed = stored_labels(monitor, labels)
        workload = {renamed[attributes["namespace"]], renamed[attributes["pod"]]}
        by_pod = [(t, e) for t, e, _ in gpu_queries() if "by pod" in t]
        assert len(by_pod) == 2
        for title, expr in by_pod:
            assert labels_produced(expr) == workload, title
        # The memory alert routes to the workload's team: its namespace label is the workload's.
        [(_, alert, _)] = [q for q in gpu_queries() if q[0] == "alert GpuMemoryNearFull"]
        assert f'"namespace", "$1", "{renamed[attributes["namespace"]]}"' in alert
        # The adapter serves gpu_utilization on the same labels.
        assert set(CUSTOM_METRICS["gpu_utilization"].rule["resources"]["overrides"]) == workload


@pytest.mark.parametrize("stack", STACKS)
def test_one_service_monitor_scrapes_the_exporter(stack):
    """The operator adds its own ServiceMonitor unless its values say otherwise (vendored defaults: on); the program
    keeps its own, which waits for the monitoring CRDs, and selects the operator's Service by its real labels and port."""
    s = synth_of(stack)
    upstream = ROOT / "schemas/upstream/gpu-operator" / PINS["gpu-operator"] / "assets/state-dcgm-exporter"
    defaults = yaml.safe_load((ROOT / "schemas/charts/gpu-operator" / PINS["gpu-operator"] / "values.yaml").read_text())
    values = s.release("gpu-operator")["inputs"]["values"]["dcgmExporter"]
    operator_monitor = values.get("serviceMonitor", {}).get("enabled", defaults["dcgmExporter"]["serviceMonitor"]["enabled"])
    service = yaml.safe_load((upstream / "0400_service.yaml").read_text())
    program = [
        m for m in s.result.manifests.values()
        if m["kind"] == "ServiceMonitor"
        and m["spec"]["selector"].get("matchLabels", {}).items() <= service["metadata"]["labels"].items()
        and {e["port"] for e in m["spec"]["endpoints"]} & {p["name"] for p in service["spec"]["ports"]}
    ]
    assert len(program) + int(operator_monitor) == 1
    assert yaml.safe_load((upstream / "0500_service_monitor.yaml").read_text())["spec"]["selector"] == program[0]["spec"]["selector"]


# -- Istio sidecars: one scrape path per series ---------------------------------------------------------------------


def sidecar_ports() -> dict[str, int]:
    """The ports the injected istio-proxy container declares (Istio's injection template)."""
    template = (ISTIO / "manifests/charts/istio-control/istio-discovery/files/injection-template.yaml").read_text()
    block = template.split("  - name: istio-proxy", 1)[1].split("    args:", 1)[0]
    ports = re.findall(r"containerPort: (\d+)\s+protocol: TCP\s+name: ([\w-]+)", block)
    assert ports, "the sidecar declares no port any more"
    return {name: int(port) for port, name in ports}


def merged_sources(envoy_port: int) -> set[str]:
    """What the agent's /stats/prometheus serves, read from its handler: Envoy's stats, the app's, its own."""
    server = (ISTIO / "pilot/cmd/pilot-agent/status/server.go").read_text()
    handler = server.split("func (s *Server) handleStats(", 1)[1].split("\nfunc ", 1)[0]
    sources = set()
    if 'fmt.Sprintf("http://localhost:%d/stats/prometheus", s.envoyStatsPort)' in handler:
        sources.add(f"envoy:{envoy_port}")
    if "s.prometheus.Port, s.prometheus.Path" in handler:
        sources.add("app")
    if "scrapeAndWriteAgentMetrics(" in handler:
        sources.add("agent")
    return sources


def merge_rewrites_annotations() -> bool:
    """The injector points prometheus.io/port at the agent's status port when merging (Istio's webhook)."""
    webhook = (ISTIO / "pkg/kube/inject/webhook.go").read_text()
    return 'pod.Annotations["prometheus.io/port"] = targetPort' in webhook and "GetStatusPort()" in webhook


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"Exists": present, "DoesNotExist": not present, "In": value in e.get("values", []), "NotIn": value not in e.get("values", [])}[e["operator"]]
        if not ok:
            return False
    return True


def in_namespaces(monitor: dict[str, Any], namespace: str) -> bool:
    chosen = monitor["spec"].get("namespaceSelector", {})
    if chosen.get("any"):
        return True
    return namespace in chosen.get("matchNames", [monitor["metadata"]["namespace"]])


def relabel(labels: dict[str, str], rules: Iterable[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's keep/drop/replace on a target's labels (regexes anchored); None when the target is dropped."""
    for r in rules:
        value = r.get("separator", ";").join(labels.get(s, "") for s in r.get("sourceLabels", []))
        match = re.fullmatch(r.get("regex", "(.*)"), value)
        action = r.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            labels[r["targetLabel"]] = match.expand(r.get("replacement", "$1").replace("$", "\\"))
    return labels


class Pod:
    """A pod as it runs: after the sidecar injector, with the ports each container declares."""

    def __init__(self, namespace: str, template: dict[str, Any], injected: bool, merge: bool, status_port: int):
        meta, spec = template.get("metadata", {}), template["spec"]
        self.namespace, self.name = namespace, meta.get("labels", {}).get("app", "pod")
        self.labels, self.annotations = dict(meta.get("labels", {})), dict(meta.get("annotations", {}))
        self.containers = {c["name"]: {p.get("name", str(p["containerPort"])): p["containerPort"] for p in c.get("ports", [])} for c in spec["containers"]}
        self.app_port = int(self.annotations["prometheus.io/port"]) if self.annotations.get("prometheus.io/scrape") == "true" else None
        if injected:
            self.containers["istio-proxy"] = sidecar_ports()
            self.labels.setdefault("security.istio.io/tlsMode", "istio")
            if merge and self.annotations.get("prometheus.io/scrape", "true") != "false":
                self.annotations.update({"prometheus.io/port": str(status_port), "prometheus.io/path": "/stats/prometheus", "prometheus.io/scrape": "true"})

    def meta(self, container: str, port: int) -> dict[str, str]:
        labels = {"__address__": f"10.0.0.1:{port}", "__meta_kubernetes_pod_ip": "10.0.0.1", "__meta_kubernetes_pod_container_name": container}
        for key, value in self.annotations.items():
            name = re.sub(r"[^A-Za-z0-9_]", "_", key)
            labels[f"__meta_kubernetes_pod_annotation_{name}"] = value
            labels[f"__meta_kubernetes_pod_annotationpresent_{name}"] = "true"
        return labels

    def sources(self, port: int, status_port: int) -> set[str]:
        """The series a scrape of this port returns, by where they come from."""
        envoy = sidecar_ports().get("http-envoy-prom")
        if "istio-proxy" in self.containers and port == status_port:
            return {s for s in merged_sources(envoy) if s != "app" or self.app_port}
        if "istio-proxy" in self.containers and port == envoy:
            return {f"envoy:{envoy}"}
        return {"app"} if port == self.app_port else {f"port:{port}"}


def kept_sources(sources: set[str], pod: "Pod", rules: Iterable[dict[str, Any]]) -> set[str]:
    """What a target's metricRelabelings keep of its sources: a rule on the series name keeps or drops the engine's
    own series (`app` of a vLLM pod, all named vllm:*), never Envoy's or the agent's."""
    for r in rules:
        if r.get("sourceLabels") != ["__name__"]:
            continue
        assert r["regex"] == VLLM_SERIES, f"a metric relabelling this check cannot read: {r}"
        engine = {"app"} if LLM_LABEL in pod.labels else set()
        sources = sources & engine if r["action"] == "keep" else sources - engine
    return sources


def pods_and_scrapes(manifests: dict[str, dict[str, Any]], istiod_values: dict[str, Any]) -> dict[tuple[str, str], Counter]:
    """For every pod template the program declares: how often each source of series is scraped, over every
    PodMonitor and ServiceMonitor the program declares."""
    status_port = istiod_values.get("global", {}).get("proxy", {}).get("statusPort") or ISTIOD_DEFAULTS["global"]["proxy"]["statusPort"]
    merge = istiod_values.get("meshConfig", {}).get("enablePrometheusMerge", True) and merge_rewrites_annotations()
    injecting = {m["metadata"]["name"] for m in manifests.values() if m["kind"] == "Namespace" and m["metadata"].get("labels", {}).get("istio-injection") == "enabled"}
    pods = []
    for m in manifests.values():
        if m["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        template, ns = m["spec"]["template"], m["metadata"]["namespace"]
        injected = ns in injecting and template.get("metadata", {}).get("annotations", {}).get("sidecar.istio.io/inject") != "false"
        pods.append((m, Pod(ns, template, injected, merge, status_port)))
    scraped: dict[tuple[str, str], Counter] = {(p.namespace, m["metadata"]["name"]): Counter() for m, p in pods}
    monitors = [m for m in manifests.values() if m["kind"] in ("PodMonitor", "ServiceMonitor")]
    services = [m for m in manifests.values() if m["kind"] == "Service"]
    for monitor in monitors:
        for workload, pod in pods:
            if not in_namespaces(monitor, pod.namespace):
                continue
            targets: list[tuple[str, int, list, list]] = []
            if monitor["kind"] == "PodMonitor":
                if not selects(monitor["spec"]["selector"], pod.labels):
                    continue
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    for container, ports in pod.containers.items():
                        for name, number in ports.items():
                            if endpoint.get("port") in (None, name):
                                targets.append((container, number, endpoint.get("relabelings", []), endpoint.get("metricRelabelings", [])))
            else:
                for service in services:
                    if service["metadata"]["namespace"] != pod.namespace or not selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                        continue
                    if not service["spec"].get("selector") or not service["spec"]["selector"].items() <= pod.labels.items():
                        continue
                    for endpoint in monitor["spec"]["endpoints"]:
                        for port in service["spec"]["ports"]:
                            if port.get("name") == endpoint.get("port"):
                                target = port.get("targetPort", port["port"])
                                number = target if isinstance(target, int) else next(n for ports in pod.containers.values() for k, n in ports.items() if k == target)
                                targets.append(("", number, endpoint.get("relabelings", []), endpoint.get("metricRelabelings", [])))
            for container, number, rules, series_rules in targets:
                labels = relabel(pod.meta(container, number), rules)
                if labels is not None:
                    port = int(labels["__address__"].rsplit(":", 1)[1])
                    scraped[(pod.namespace, workload["metadata"]["name"])].update(kept_sources(pod.sources(port, status_port), pod, series_rules))
    return scraped


ISTIOD_DEFAULTS = yaml.safe_load((ROOT / "schemas/charts/istiod" / PINS["istio"] / "values.yaml").read_text())["_internal_defaults_do_not_set"]


def test_the_merged_endpoint_carries_envoys_stats_as_the_istio_source_says():
    envoy = sidecar_ports()["http-envoy-prom"]
    assert merged_sources(envoy) == {f"envoy:{envoy}", "app", "agent"}
    assert merge_rewrites_annotations()
    assert ISTIOD_DEFAULTS["global"]["proxy"]["statusPort"] == 15020


@pytest.mark.parametrize("stack", STACKS)
def test_no_series_is_scraped_by_two_targets(stack):
    s = synth_of(stack)
    scraped = pods_and_scrapes(s.result.manifests, s.release("istiod")["inputs"]["values"])
    twice = {pod: sorted(k for k, n in counts.items() if n > 1) for pod, counts in scraped.items() if any(n > 1 for n in counts.values())}
    assert twice == {}, f"scraped more than once: {twice}"


def test_every_serving_pod_reports_its_requests_and_its_own_metrics_once():
    # The hand-built path's pods (dev); KServe's predictor pods carry the same annotations and sidecar.
    s = synth_of("dev")
    scraped = pods_and_scrapes(s.result.manifests, s.release("istiod")["inputs"]["values"])
    envoy = sidecar_ports()["http-envoy-prom"]
    serving = [d for d in s.result.manifests.values() if d["kind"] == "Deployment" and d["spec"]["template"]["spec"].get("priorityClassName") == "ml-serving"]
    assert serving
    for d in serving:
        assert scraped[(d["metadata"]["namespace"], d["metadata"]["name"])] == Counter({f"envoy:{envoy}": 1, "app": 1, "agent": 1})


def test_the_check_finds_a_sidecar_read_twice():
    """What the platform declared before: Envoy's port by the PodMonitor and the merged port by a ServiceMonitor."""
    s = synth_of("dev")
    manifests = dict(s.result.manifests)
    [serving] = [d for d in manifests.values() if d["kind"] == "Deployment" and d["metadata"]["namespace"] == "nlp" and d["metadata"]["name"] == "sentiment"]
    ns, labels = "nlp", {"app.kubernetes.io/name": "sentiment"}
    manifests["service"] = {"kind": "Service", "metadata": {"name": "sentiment", "namespace": ns, "labels": labels},
                            "spec": {"selector": {"app": "sentiment"}, "ports": [{"name": "http-monitoring", "port": 15020, "targetPort": 15020}]}}
    manifests["monitor"] = {"kind": "ServiceMonitor", "metadata": {"name": "sentiment", "namespace": ns},
                            "spec": {"selector": {"matchLabels": labels}, "namespaceSelector": {"matchNames": [ns]},
                                     "endpoints": [{"port": "http-monitoring", "path": "/stats/prometheus"}]}}
    scraped = pods_and_scrapes(manifests, s.release("istiod")["inputs"]["values"])
    assert scraped[(ns, serving["metadata"]["name"])][f"envoy:{sidecar_ports()['http-envoy-prom']}"] == 2


def test_requests_per_second_sums_the_one_scrape_path():
    query = CUSTOM_METRICS["requests_per_second"].rule["metricsQuery"]
    assert query.startswith("sum by (<<.GroupBy>>) (rate(") and "job" not in query
    serving = {p["title"]: p["targets"][0]["expr"] for p in dashboards()["serving"]["panels"]}
    assert serving["Requests per second by model"].startswith("sum by (destination_workload_namespace, destination_service_name) (rate(istio_requests_total")
