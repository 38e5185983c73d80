"""prometheus-adapter, the Vertical Pod Autoscaler and the autoscalers that use them, as synthesized."""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from infra.config.pins import PINS

from components.observability import Observability
from infra.config import AutoscalingConfig, ConfigError
from infra.lib.metrics import ADAPTER_METRICS, CUSTOM_METRICS
from infra.offline.policy_check import check
from infra.synth import synthesize
from policies.rules import RULES
from policies.rules.autoscaling import custom_metrics, maps_resource, metric_name, series_name, served
from tests import schemas
from tests.conftest import ROOT, STACKS, Synth, lean, synth_of
from tests.test_config import parse_stack, stack_raw

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
VPA = "kubernetes:autoscaling.k8s.io/v1:VerticalPodAutoscaler"
SYSTEM = {"nodeSelector": {"ml-platform.io/pool": "system"}, "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}]}
# Serving workloads the way prod is meant to scale them: a model on requests per second (its VPA applying
# recommendations), and a GPU model on GPU utilisation.
SCALED_WORKLOADS = [
    {
        "name": "classifier", "kind": "serving", "team": "nlp", "image": "111122223333.dkr.ecr.us-east-1.amazonaws.com/classifier:1.0.0",
        "resources": {"cpu": "1", "memoryGib": 2}, "path": "/classifier",
        "autoscaling": {"minReplicas": 2, "maxReplicas": 10, "customMetric": "requests_per_second", "customMetricTarget": "20", "vpaUpdateMode": "Recreate"},
    },
    {
        "name": "embedder", "kind": "serving", "team": "nlp", "image": "111122223333.dkr.ecr.us-east-1.amazonaws.com/embedder:1.0.0",
        "accelerator": "nvidia", "acceleratorCount": 1, "resources": {"cpu": "2", "memoryGib": 8}, "path": "/embedder",
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "customMetric": "gpu_utilization", "customMetricTarget": "60"},
    },
]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> Synth:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    lean(doc["config"], llm=True)
    doc["config"]["ml-platform:workloads"] = SCALED_WORKLOADS
    doc["config"]["ml-platform:autoscaling"] = {"verticalPodAutoscaler": {"updater": True, "admissionController": True}}
    path = tmp_path_factory.mktemp("scaled") / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Synth(synthesize("prod", path))


def every_synth(scaled: Synth) -> list[Synth]:
    return [*(synth_of(s) for s in STACKS), scaled]


def adapter_rules(synth: Synth) -> list[dict]:
    return synth.release("prometheus-adapter")["inputs"]["values"]["rules"]["custom"]


def manifests(synth: Synth, kind: str) -> dict[str, dict]:
    return {f"{m['metadata']['namespace']}/{m['metadata']['name']}": m for m in synth.result.manifests.values() if m["kind"] == kind}


# -- prometheus-adapter ---------------------------------------------------------------------------------------------
def test_adapter_is_pinned_wired_to_the_platform_prometheus_and_runs_on_the_system_nodes(stack):
    release = stack.release("prometheus-adapter")
    inputs, values = release["inputs"], release["inputs"]["values"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"]) == ("prometheus-adapter", PINS["prometheus-adapter"], "monitoring")
    assert inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
    # The chart renders --prometheus-url=<url>:<port>.
    assert f"{values['prometheus']['url']}:{values['prometheus']['port']}" == Observability.prometheus_url
    assert stack.depends_on(release, stack.release("kube-prometheus-stack"))
    assert {k: values[k] for k in SYSTEM} == SYSTEM
    assert values["resources"]["limits"]["memory"] == values["resources"]["requests"]["memory"] and values["resources"]["requests"]["cpu"]
    assert values["replicas"] == 2 and values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}


def test_metrics_k8s_io_stays_with_metrics_server(stack):
    """The chart creates the metrics.k8s.io APIService only for `rules.resource`, and external.metrics.k8s.io only for
    `rules.external`: neither is set, so metrics-server keeps serving CPU and memory to every HPA."""
    rules = stack.release("prometheus-adapter")["inputs"]["values"]["rules"]
    assert set(rules) == {"default", "custom"} and rules["default"] is False
    assert stack.release("metrics-server")["inputs"]["namespace"] == "kube-system"


def test_adapter_rules_serve_exactly_the_platform_metrics_per_pod(stack):
    names = served(adapter_rules(stack))
    assert set(names) == set(ADAPTER_METRICS)
    for name, rules in names.items():
        assert all(maps_resource(rule, "pods") and maps_resource(rule, "namespaces") for rule in rules), name


def test_every_custom_metric_an_autoscaler_asks_for_is_served(scaled):
    asked = set()
    for synth in every_synth(scaled):
        names = served(adapter_rules(synth))
        for hpa in synth.of_type(HPA):
            for name, resource in custom_metrics(hpa["inputs"]):
                asked.add(name)
                assert name in names and any(maps_resource(rule, resource) for rule in names[name]), (synth.result.stack, hpa["name"], name)
    assert asked == set(ADAPTER_METRICS), "the stacks ask for every metric: the check is not vacuous"


@pytest.mark.parametrize(
    "rule, series, name",
    [
        # The chart's default rules (templates/configmap.yaml): one capture group and no `as` name it $1.
        ({"name": {"matches": "^container_(.*)_seconds_total$", "as": ""}}, "container_cpu_usage_seconds_total", "cpu_usage"),
        ({"seriesFilters": [{"isNot": "^container_.*_seconds_total$"}], "name": {"matches": "^container_(.*)_total$", "as": ""}},
         "container_cpu_usage_seconds_total", None),
        ({"seriesFilters": [{"isNot": "^container_.*_seconds_total$"}], "name": {"matches": "^container_(.*)_total$", "as": ""}},
         "container_network_receive_bytes_total", "network_receive_bytes"),
        ({"name": {"matches": "", "as": ""}}, "http_requests", "http_requests"),
        # The adapter's documented rename (docs/config.md), and Go's template rules for $ references.
        ({"name": {"matches": "^(.*)_total$", "as": "${1}_per_second"}}, "http_requests_total", "http_requests_per_second"),
        ({"name": {"matches": "^(.*)_total$", "as": "$1_per_second"}}, "http_requests_total", ""),
        ({"name": {"matches": "^(?P<base>.*)_total$", "as": "$base"}}, "http_requests_total", "http_requests"),
        ({"name": {"matches": "requests", "as": "$$0"}}, "http_requests_total", "$0"),
        ({"name": {"matches": "^(a)(b)$"}}, "ab", None),
        ({"name": {"matches": "^istio_requests_total$", "as": "requests_per_second"}}, "istio_request_bytes", None),
    ],
)
def test_metric_names_follow_the_adapters_naming(rule, series, name):
    assert metric_name(rule, series) == name


@pytest.mark.parametrize(
    "query, name",
    [('istio_requests_total{reporter="destination"}', "istio_requests_total"), ('{__name__="up",job!=""}', "up"),
     ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL"), ('{__name__=~"^container_.*",namespace!=""}', None)],
)
def test_series_queries_name_their_metric_or_none(query, name):
    assert series_name(query) == name


def test_gpu_utilisation_is_read_from_the_labels_prometheus_keeps_for_the_pod(stack):
    """The dcgm-exporter ServiceMonitor does not honour the exporter's labels, so the pod's namespace and name are kept
    as exported_namespace and exported_pod; if it ever does, the adapter rule must read namespace and pod instead."""
    monitor = manifests(stack, "ServiceMonitor")["monitoring/dcgm-exporter"]
    prefix = "" if any(e.get("honorLabels") for e in monitor["spec"]["endpoints"]) else "exported_"
    rule = CUSTOM_METRICS["gpu_utilization"].rule
    assert set(rule["resources"]["overrides"]) == {f"{prefix}namespace", f"{prefix}pod"}
    assert f'{prefix}pod!=""' in rule["seriesQuery"]


def test_an_autoscaler_on_a_custom_metric_waits_for_the_adapter(scaled, staging):
    hpas = {h["inputs"]["metadata"]["name"]: h for h in scaled.of_type(HPA)}
    for name in ("classifier", "embedder"):
        assert scaled.depends_on(hpas[name], scaled.release("prometheus-adapter")), name
    # CPU is metrics-server's: no edge where none is needed. Staging's data-prep consumer scales on its lag.
    for hpa in staging.of_type(HPA):
        custom = bool(list(custom_metrics(hpa["inputs"])))
        assert staging.depends_on(hpa, staging.release("prometheus-adapter")) == custom, hpa["name"]
    assert any(list(custom_metrics(h["inputs"])) for h in staging.of_type(HPA))


def test_custom_metric_autoscalers_scale_on_the_per_pod_average(scaled):
    spec = manifests(scaled, "HorizontalPodAutoscaler")["nlp/classifier"]["spec"]
    assert spec["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "20"}}}]


# -- configuration --------------------------------------------------------------------------------------------------
def config_error(mutate) -> str:
    raw = copy.deepcopy(stack_raw("staging"))
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)


def scale(**autoscaling):
    return lambda raw: raw["workloads"][0]["autoscaling"].update(autoscaling)


RPS = {"customMetric": "requests_per_second", "customMetricTarget": "20"}
VPA_ON = {"verticalPodAutoscaler": {"updater": True, "admissionController": True}}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (scale(customMetric="queue_depth", customMetricTarget="10"),
         'ml-platform:workloads[0].autoscaling.customMetric: "queue_depth" is not allowed: expected one of gpu_utilization, requests_per_second'),
        (scale(customMetric="requests_per_second"), "ml-platform:workloads[0].autoscaling.customMetric and customMetricTarget go together"),
        (lambda r: (r["workloads"][0].update(accelerator="cpu", acceleratorCount=0), scale(customMetric="gpu_utilization", customMetricTarget="60")(r)),
         "ml-platform:workloads[0].autoscaling.customMetric 'gpu_utilization' is not measured on cpu pods (only on nvidia)"),
        (lambda r: (scale(vpaUpdateMode="Recreate")(r), r.update(autoscaling=VPA_ON)),
         "ml-platform:workloads[0].autoscaling.vpaUpdateMode 'Recreate' with the workload's CPU-based autoscaler"),
        (scale(vpaUpdateMode="Recreate", **RPS),
         "ml-platform:workloads[0].autoscaling.vpaUpdateMode 'Recreate' needs autoscaling.verticalPodAutoscaler.admissionController: true"),
        (lambda r: (scale(vpaUpdateMode="Recreate", **RPS)(r), r.update(autoscaling={"verticalPodAutoscaler": {"admissionController": True}})),
         "ml-platform:workloads[0].autoscaling.vpaUpdateMode 'Recreate' needs autoscaling.verticalPodAutoscaler.updater: true"),
        (lambda r: (scale(vpaUpdateMode="Initial", **RPS)(r), r.update(autoscaling={"verticalPodAutoscaler": {"enabled": False}})),
         "ml-platform:workloads[0].autoscaling.vpaUpdateMode 'Initial' needs autoscaling.verticalPodAutoscaler.enabled: true"),
        (scale(vpaUpdateMode="Auto", **RPS), "ml-platform:workloads[0].autoscaling.vpaUpdateMode: \"Auto\" is not allowed: 'Auto' is deprecated"),
        (scale(vpaUpdateMode="InPlace"), "ml-platform:workloads[0].autoscaling.vpaUpdateMode: \"InPlace\" is not allowed"),
        (lambda r: (scale(vpaUpdateMode="InPlaceOrRecreate", **RPS)(r), r.update(autoscaling=VPA_ON),
                    r["cluster"].update(kubernetesVersion="1.32"), r["cluster"].setdefault("addons", {}).update(kubeProxy="v1.32.6-eksbuild.2")),
         "ml-platform:workloads[0].autoscaling.vpaUpdateMode 'InPlaceOrRecreate' needs in-place pod resize, on by default from Kubernetes 1.33"),
        (lambda r: r.update(autoscaling={"prometheusAdapter": {"replicas": 0}}), "ml-platform:autoscaling.prometheusAdapter.replicas: 0 is not allowed"),
    ],
)
def test_bad_autoscaling_config_names_the_key(mutate, expected):
    assert expected in config_error(mutate)


def test_an_acting_vpa_with_a_custom_metric_autoscaler_is_valid():
    raw = copy.deepcopy(stack_raw("staging"))
    raw["workloads"][0]["autoscaling"].update(vpaUpdateMode="InPlaceOrRecreate", **RPS)
    raw["autoscaling"] = VPA_ON
    assert parse_stack(raw).workloads[0].autoscaling.vpa_update_mode == "InPlaceOrRecreate"


def test_an_unquoted_off_in_a_stack_file_is_the_mode_off():
    raw = copy.deepcopy(stack_raw("staging"))
    raw["workloads"][0]["autoscaling"].update(yaml.safe_load("vpaUpdateMode: Off"))
    assert parse_stack(raw).workloads[0].autoscaling.vpa_update_mode == "Off"


def test_defaults_are_the_pins():
    defaults = AutoscalingConfig()
    assert defaults.prometheus_adapter.version == PINS["prometheus-adapter"]
    assert defaults.vertical_pod_autoscaler.version == PINS["vertical-pod-autoscaler"]
    assert defaults.vertical_pod_autoscaler.enabled and not defaults.vertical_pod_autoscaler.updater and not defaults.vertical_pod_autoscaler.admission_controller


# -- Vertical Pod Autoscaler ----------------------------------------------------------------------------------------
def test_vpa_chart_recommends_by_default_on_the_system_nodes(stack):
    release = stack.release("vertical-pod-autoscaler")
    inputs, values = release["inputs"], release["inputs"]["values"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"]) == ("vertical-pod-autoscaler", PINS["vertical-pod-autoscaler"], "kube-system")
    assert inputs["repositoryOpts"]["repo"] == "https://kubernetes.github.io/autoscaler" and not inputs.get("skipCrds")
    recommender = values["recommender"]
    assert recommender["enabled"] and {k: recommender[k] for k in SYSTEM} == SYSTEM
    assert recommender["resources"]["limits"]["memory"] == recommender["resources"]["requests"]["memory"]
    assert values["updater"] == {"enabled": False} and values["admissionController"] == {"enabled": False}


def test_opted_in_vpa_components_resize_only_team_pods(scaled):
    values = scaled.release("vertical-pod-autoscaler")["inputs"]["values"]
    for component in ("updater", "admissionController"):
        assert values[component]["enabled"] and {k: values[component][k] for k in SYSTEM} == SYSTEM, component
        assert values[component]["resources"]["limits"]["memory"] == values[component]["resources"]["requests"]["memory"]
    selector = values["admissionController"]["mutatingWebhookConfiguration"]["namespaceSelector"]
    [expression] = selector["matchExpressions"]
    assert expression["operator"] == "Exists"
    team = manifests_by_kind_cluster(scaled, "Namespace")["nlp"]
    assert expression["key"] in team["metadata"]["labels"]
    assert expression["key"] not in manifests_by_kind_cluster(scaled, "Namespace")["monitoring"]["metadata"]["labels"]


def manifests_by_kind_cluster(synth: Synth, kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in synth.result.manifests.values() if m["kind"] == kind}


def test_every_serving_deployment_has_a_valid_vpa_after_its_chart(scaled):
    for synth in every_synth(scaled):
        vpas = {r["inputs"]["metadata"]["name"]: r for r in synth.of_type(VPA)}
        # The classic serving path's (LLM engines have none: their memory is the GPU's).
        deployments = [d for d in manifests(synth, "Deployment").values()
                       if d["spec"]["template"]["spec"].get("priorityClassName") == "ml-serving" and "app" in d["metadata"]["labels"]]
        assert len(vpas) == len(deployments)
        for d in deployments:
            vpa = vpas[d["metadata"]["name"]]
            manifest = {"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler", **{k: vpa["inputs"][k] for k in ("metadata", "spec")}}
            schemas.validate(manifest)
            assert manifest["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"]}
            assert synth.depends_on(vpa, synth.release("vertical-pod-autoscaler"))
    modes = {n: v["inputs"]["spec"]["updatePolicy"]["updateMode"] for n, v in {r["inputs"]["metadata"]["name"]: r for r in scaled.of_type(VPA)}.items()}
    assert modes == {"classifier": "Recreate", "embedder": "Off"}
    assert {r["inputs"]["spec"]["updatePolicy"]["updateMode"] for s in STACKS for r in synth_of(s).of_type(VPA)} == {"Off"}


def test_vpa_resizes_the_model_container_only(staging):
    policies = staging.of_type(VPA)[0]["inputs"]["spec"]["resourcePolicy"]["containerPolicies"]
    assert policies == [{"containerName": "model", "controlledResources": ["cpu", "memory"]}, {"containerName": "*", "mode": "Off"}]


def test_the_vpa_panel_reads_the_metric_kube_state_metrics_exports(stack):
    ksm = stack.release("kube-prometheus-stack")["inputs"]["values"]["kube-state-metrics"]
    assert ksm["customResourceState"]["enabled"] is True
    [resource] = ksm["customResourceState"]["config"]["spec"]["resources"]
    gvk = resource["groupVersionKind"]
    crd = schemas.crd_schemas()[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])]
    # kube-state-metrics names a metric <metricNamePrefix>_<name>, the prefix defaulting to kube_customresource.
    prefix = resource.get("metricNamePrefix", "kube_customresource")
    exported = {"_".join(filter(None, (prefix, m["name"]))) for m in resource["metrics"]}
    labels = set(resource["labelsFromPath"]) | {label for m in resource["metrics"] for label in [*m["commonLabels"], *m["each"]["gauge"]["labelsFromPath"]]}
    for m in resource["metrics"]:
        gauge = m["each"]["gauge"]
        node = crd
        for key in gauge["path"]:
            node = node["properties"][key]
        assert set(gauge["labelsFromPath"]["container"]) <= set(node["items"]["properties"])
        assert gauge["valueFrom"][0] in node["items"]["properties"]
    assert {"apiGroups": ["autoscaling.k8s.io"], "resources": ["verticalpodautoscalers"], "verbs": ["list", "watch"]} in ksm["rbac"]["extraRules"]
    board = json.loads(stack.result.manifests["configmap--monitoring--dashboard-ml-serving.yaml"]["data"]["ml-serving.json"])
    [panel] = [p for p in board["panels"] if p["title"] == "VPA recommendation / request by workload"]
    expr = panel["targets"][0]["expr"]
    [used] = [name for name in exported if name in expr]
    assert {"namespace", "target_name", "container", "resource"} <= labels and "target_kind" in labels
    assert used == "kube_verticalpodautoscaler_status_recommendation_containerrecommendations_target"


# -- policy rules ---------------------------------------------------------------------------------------------------
RULE = {r.name: r for r in RULES}


def violations(rule: str, records: list[dict]) -> list[dict]:
    return check(records, "prod", rules=[RULE[rule]])["violations"]


def mutated(synth: Synth, type_: str, name: str, mutate) -> list[dict]:
    records = copy.deepcopy(synth.resources)
    record = next(r for r in records if r["type"] == type_ and r["inputs"]["metadata"]["name"] == name)
    mutate(record["inputs"]["spec"])
    # Stack rules read outputs: the inputs plus what the provider computes.
    record["outputs"] = {**{k: v for k, v in record["outputs"].items() if k != "spec"}, **copy.deepcopy(record["inputs"])}
    return records


def test_served_custom_metrics_pass_and_unserved_ones_fail(scaled):
    assert violations("hpa-custom-metric-served", scaled.resources) == []
    renamed = mutated(scaled, HPA, "classifier", lambda s: s["metrics"][0]["pods"]["metric"].update(name="queue_depth"))
    [v] = violations("hpa-custom-metric-served", renamed)
    assert "'queue_depth' is served by no prometheus-adapter rule" in v["message"] and v["urn"].endswith("::nlp-classifier-stable")

    def on_a_deployment(spec):
        spec["metrics"] = [{"type": "Object", "object": {"metric": {"name": "requests_per_second"},
                                                         "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "classifier"},
                                                         "target": {"type": "Value", "value": "100"}}}]

    [v] = violations("hpa-custom-metric-served", mutated(scaled, HPA, "classifier", on_a_deployment))
    assert "served, but not for Deployment" in v["message"]


def test_without_its_rules_no_metric_is_served(scaled):
    records = copy.deepcopy(scaled.resources)
    adapter = next(r for r in records if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["name"] == "prometheus-adapter")
    adapter["outputs"]["values"]["rules"] = {"default": True}
    assert {v["urn"].rsplit("::", 1)[-1] for v in violations("hpa-custom-metric-served", records)} == {
        "nlp-classifier-stable", "nlp-embedder-stable", "nlp-assistant-stable-hpa"}  # prod's LLM, on vLLM's KV-cache use


def test_an_acting_vpa_beside_a_cpu_autoscaler_fails(staging, scaled):
    assert violations("vpa-not-fighting-hpa", staging.resources) == violations("vpa-not-fighting-hpa", scaled.resources) == []
    recreate = mutated(staging, VPA, "sentiment", lambda s: s["updatePolicy"].update(updateMode="Recreate"))
    [v] = violations("vpa-not-fighting-hpa", recreate)
    assert "both act on cpu" in v["message"]
    # Without an updatePolicy a VPA runs in Recreate.
    assert violations("vpa-not-fighting-hpa", mutated(staging, VPA, "sentiment", lambda s: s.pop("updatePolicy")))
    # Memory only is not what the autoscaler scales on.
    memory_only = mutated(staging, VPA, "sentiment", lambda s: (s["updatePolicy"].update(updateMode="Recreate"),
                                                                 s["resourcePolicy"]["containerPolicies"][0].update(controlledResources=["memory"])))
    assert violations("vpa-not-fighting-hpa", memory_only) == []
