"""kube-prometheus-stack, scrape targets, dashboards and alerts as synthesized."""
from __future__ import annotations

import json

import pytest
import yaml

from components.observability import alert_rules
from infra.config import ObservabilityConfig
from infra.offline.mocks import digest
from infra.synth import _summary, synthesize, write_artifacts
from tests.conftest import ROOT, synth_of

MONITOR_TYPES = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


@pytest.mark.parametrize("stack_name, retention, volume, replicas", [("dev", "7d", 50, 1), ("staging", "15d", 100, 1), ("prod", "30d", 500, 2)])
def test_prometheus_retention_volume_and_replicas_per_environment(stack_name, retention, volume, replicas):
    spec = synth_of(stack_name).release("kube-prometheus-stack")["inputs"]["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == retention and spec["replicas"] == replicas
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3" and claim["resources"]["requests"]["storage"] == f"{volume}Gi"
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False and spec["ruleSelectorNilUsesHelmValues"] is False


def test_grafana_admin_password_is_a_generated_secret(stack):
    values = stack.release("kube-prometheus-stack")["inputs"]["values"]["grafana"]
    assert values["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user", "passwordKey": "admin-password"}
    assert values["persistence"]["enabled"] is True
    secret = stack.result.manifests["secret--monitoring--grafana-admin.yaml"]
    assert secret["stringData"] == {"admin-user": "[secret]", "admin-password": "[secret]"}
    assert stack.one("random:index/randomPassword:RandomPassword")["inputs"]["length"] == 32


def test_every_monitor_and_rule_depends_on_the_release_that_installs_its_crd(stack):
    release = stack.release("kube-prometheus-stack")
    monitors = [r for r in stack.resources if r["type"].split(":")[-1] in MONITOR_TYPES]
    assert {m["inputs"]["metadata"]["name"] for m in monitors} >= {
        "karpenter", "dcgm-exporter", "neuron-monitor", "istiod", "envoy-sidecars", "ml-platform-alerts"
    }
    for m in monitors:
        assert stack.depends_on(m, release), m["name"]


def test_scrape_targets_wait_for_what_they_scrape(stack):
    by_name = {r["inputs"]["metadata"]["name"]: r for r in stack.resources if r["type"].split(":")[-1] in MONITOR_TYPES}
    assert stack.depends_on(by_name["karpenter"], stack.release("karpenter"))
    assert stack.depends_on(by_name["dcgm-exporter"], stack.release("gpu-operator"))
    assert stack.depends_on(by_name["istiod"], stack.release("istiod"))
    assert stack.depends_on(by_name["neuron-monitor"], stack.one("kubernetes:apps/v1:DaemonSet", "accelerators-neuron-monitor"))


def test_dashboards_are_provisioned_for_the_grafana_sidecar(stack):
    boards = {f: m for f, m in stack.result.manifests.items() if f.startswith("configmap--monitoring--dashboard-") and not f.endswith("-ml-llm.yaml")}
    # The platform's four, GitOps delivery's where Argo CD runs in the cluster (components/gitops.py), the Pipelines
    # dashboard where Kubeflow Pipelines run (tests/test_kubeflow.py), the streaming lag board where a team runs the
    # data-prep consumer, training's and tuning's (components/training.py, katib.py); the LLM board is tests/test_llm_serving.py's.
    extra = {"configmap--monitoring--dashboard-ml-gitops.yaml", "configmap--monitoring--dashboard-ml-training.yaml", "configmap--monitoring--dashboard-ml-tuning.yaml"}
    assert len(boards) == (4 + len(extra & set(boards)) + ("pipelines" in stack.result.outputs)
                           + any(r["name"] == "streaming-dashboard" for r in stack.resources))
    queries = ""
    for m in boards.values():
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(key, text)] = m["data"].items()
        board = json.loads(text)
        assert key.endswith(".json") and board["panels"]
        queries += " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "neuroncore_utilization_ratio", "istio_request_duration_milliseconds_bucket",
                   "istio_requests_total", "karpenter_nodes_allocatable"):
        assert metric in queries


def test_alert_rules_expressions_and_labels():
    obs = ObservabilityConfig(latencyObjectiveMs=300, errorRateObjective=0.02, gpuIdleMinutes=90)
    rules = {r["alert"]: r for g in alert_rules(obs)["groups"] for r in g["rules"]}
    assert set(rules) == {
        "GpuIdleOnPaidNode", "GpuMemoryNearFull", "NeuronCoreIdleOnPaidNode", "ModelLatencyP95High",
        "ModelErrorRateHigh", "HpaPinnedAtMaximum", "PodUnschedulable", "KarpenterNodeLaunchFailing",
    }
    assert rules["GpuIdleOnPaidNode"]["expr"] == "avg by (node, gpu) (avg_over_time(DCGM_FI_DEV_GPU_UTIL[90m])) < 5"
    assert rules["GpuIdleOnPaidNode"]["for"] == "90m"
    assert rules["GpuMemoryNearFull"]["expr"].endswith("> 0.95")
    assert "histogram_quantile(0.95," in rules["ModelLatencyP95High"]["expr"] and rules["ModelLatencyP95High"]["expr"].endswith("> 300")
    assert rules["ModelErrorRateHigh"]["expr"].endswith("> 0.02") and 'response_code=~"5.."' in rules["ModelErrorRateHigh"]["expr"]
    assert "kube_horizontalpodautoscaler_status_current_replicas >= kube_horizontalpodautoscaler_spec_max_replicas" in rules["HpaPinnedAtMaximum"]["expr"]
    # Workload alerts carry namespace and workload: team routing and inhibition match on them.
    for alert, source in (("ModelLatencyP95High", "destination_workload"), ("ModelErrorRateHigh", "destination_workload"), ("HpaPinnedAtMaximum", "horizontalpodautoscaler")):
        expr = rules[alert]["expr"]
        assert expr.startswith("label_replace(label_replace(") and f'"workload", "$1", "{source}", "(.+)")' in expr and '"namespace", "$1"' in expr
    assert rules["PodUnschedulable"]["for"] == "10m" and "kube_pod_status_unschedulable" in rules["PodUnschedulable"]["expr"]
    assert 'method="Create"' in rules["KarpenterNodeLaunchFailing"]["expr"]
    for r in rules.values():
        assert r["labels"]["severity"] in ("warning", "critical") and r["labels"]["team"] == "ml-platform"
        assert r["annotations"]["summary"]
    assert {rules[a]["labels"]["severity"] for a in ("ModelLatencyP95High", "ModelErrorRateHigh", "KarpenterNodeLaunchFailing")} == {"critical"}


MARKER = "MARKER-7f3c9e1b-not-for-artifacts"


def test_no_secret_appears_in_any_artifact(tmp_path):
    """Grafana's generated password and the receivers' credentials, decrypted as the engine would, reach no artifact."""
    stack_file = tmp_path / "Pulumi.prod.yaml"
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    doc["config"]["ml-platform:alerting"]["receivers"].append({"name": "chat", "kind": "slack", "slackChannel": "#ml"})
    doc["config"]["ml-platform:alerting"]["routes"]["warning"] = "chat"
    doc["config"]["ml-platform:teams"][0]["alertReceiver"] = "chat"
    doc["config"]["ml-platform:alertingSecrets"] = {"oncall": {"secure": "v1:AAAAb25jYWxs"}, "chat": {"secure": "v1:AAAAY2hhdA=="}}
    stack_file.write_text(yaml.safe_dump(doc))
    decrypted = {"ml-platform:alertingSecrets.oncall": f"{MARKER}-routing-key", "ml-platform:alertingSecrets.chat": f"https://hooks.example/{MARKER}"}
    result = synthesize("prod", stack_file, decrypted=decrypted)
    assert not result.mandatory_violations and result.placeholders == []
    out = tmp_path / "out"
    write_artifacts(result, out)
    password = next(r for r in result.resources if r["type"] == "random:index/randomPassword:RandomPassword")
    assert password["outputs"]["result"] == "[secret]"
    generated = (digest(f"password:{digest(password['urn'], 24)}", 64) * 2)[:32]
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert MARKER not in text and generated not in text, path.relative_to(out)
    credentials = next(r for r in result.resources if r["type"] == "kubernetes:core/v1:Secret" and r["inputs"]["metadata"]["name"] == "alertmanager-receivers")
    assert credentials["inputs"]["stringData"] == {"chat": "[secret]", "oncall": "[secret]"}
    team = next(r for r in result.resources if r["type"] == "kubernetes:core/v1:Secret" and r["inputs"]["metadata"]["namespace"] == "nlp")
    assert team["inputs"]["stringData"] == {"credential": "[secret]"}


def test_offline_synth_fills_unset_credentials_with_fake_placeholders_and_says_so(tmp_path):
    result = synth_of("prod").result
    assert result.placeholders == ["ml-platform:alertingSecrets.oncall"]
    assert "fake placeholder values: ml-platform:alertingSecrets.oncall" in _summary(result, tmp_path, 1.0)
