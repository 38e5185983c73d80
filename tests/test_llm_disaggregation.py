"""Prefill/decode disaggregation of an LLM workload (staging's assistant), the llm-d way: prefill and decode engine pods
in one InferencePool, llm-d's picker with its P/D profiles, the decode pods' routing sidecar; checked against llm-d's
sources at the pinned release (schemas/upstream/llm-d-router)."""
from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from components.llm_serving import PD_EPP_CONFIG, pd_epp_config
from infra.lib.llm_engines import DECODE_ENGINE_PORT, ENGINE_PORT, kv_transfer_ports
from infra.config.pins import PINS
from policies.rules import RULES
from tests.conftest import ROOT, synth_of
from tests.test_config import error_of, parse_stack, stack_raw

UPSTREAM = ROOT / "schemas/upstream/llm-d-router" / PINS["llm-d-router"]
TRACKS = {"assistant": 1, "assistant-canary": 1}  # each version's prefill pods at staging's prefillReplicas: 1


def manifest(name: str) -> dict:
    return synth_of("staging").result.manifests[name]


def declared_flags(go_source: str) -> set[str]:
    """The flags a Go command declares with pflag, by literal name or by a string constant."""
    constants = dict(re.findall(r"^\s*(\w+)\s*=\s*\"([a-z0-9-]+)\"", go_source, re.M))
    names = re.findall(r"fs\.\w+Var\(&[\w.]+,\s*(\"[a-z0-9-]+\"|\w+)", go_source)
    return {n.strip('"') if n.startswith('"') else constants[n] for n in names if n.startswith('"') or n in constants}


def flag_names(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0].removeprefix("--") for a in args if a.startswith("--")}


def role_values() -> dict[str, str]:
    roles = (UPSTREAM / "pkg/epp/framework/plugins/scheduling/filter/bylabel/roles.go").read_text()
    return dict(re.findall(r"^\s*(Role\w*)\s*=\s*\"([^\"]+)\"", roles, re.M))


def test_each_version_runs_decode_and_prefill_engines_in_its_pool():
    roles = role_values()
    for track, prefill_replicas in TRACKS.items():
        decode, prefill = manifest(f"deployment--nlp--{track}.yaml"), manifest(f"deployment--nlp--{track}-prefill.yaml")
        pool = manifest(f"inferencepool--nlp--{track}.yaml")["spec"]
        assert pool["targetPorts"] == [{"number": ENGINE_PORT}]
        # Decode pods keep an undivided version's selector: turning disaggregation on replaces no Deployment.
        assert decode["spec"]["selector"]["matchLabels"] == {"ml-platform.io/llm": track}
        assert prefill["spec"]["selector"]["matchLabels"] == {"ml-platform.io/llm": f"{track}-prefill"}
        for deployment, role in ((decode, roles["RoleDecode"]), (prefill, roles["RolePrefill"])):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert labels[roles["RoleLabel"]] == role
            # The pool holds both roles: the picker's filters tell them apart by the label.
            assert pool["selector"]["matchLabels"] == {"ml-platform.io/llm-pool": track} and labels["ml-platform.io/llm-pool"] == track
        # Disruptions take one pod of each at a time.
        for engines in (track, f"{track}-prefill"):
            pdb = manifest(f"poddisruptionbudget--nlp--{engines}.yaml")["spec"]
            assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {"ml-platform.io/llm": engines}}}
        assert prefill["spec"]["replicas"] == prefill_replicas
        # What answers on the pool's port: the decode pod's routing sidecar, the prefill pod's engine.
        decode_pod, prefill_pod = decode["spec"]["template"]["spec"], prefill["spec"]["template"]["spec"]
        sidecar = next(c for c in decode_pod["containers"] if c["name"] == "routing-sidecar")
        assert [p["containerPort"] for p in sidecar["ports"]] == [ENGINE_PORT]
        assert [p["containerPort"] for p in prefill_pod["containers"][0]["ports"]] == [ENGINE_PORT]
        decode_engine = decode_pod["containers"][0]
        assert decode_engine["args"][decode_engine["args"].index("--port") + 1] == str(DECODE_ENGINE_PORT)
        assert f"--model-server-port={DECODE_ENGINE_PORT}" in sidecar["args"]
        for pod in (decode_pod, prefill_pod):
            engine = pod["containers"][0]
            transfer = json.loads(engine["args"][engine["args"].index("--kv-transfer-config") + 1])
            assert transfer == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
            assert engine["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # Decode pods autoscale on the engine's queue; prefill pods are as many as configured.
    hpas = {manifest(f"horizontalpodautoscaler--nlp--{t}.yaml")["spec"]["scaleTargetRef"]["name"] for t in TRACKS}
    assert hpas == set(TRACKS)


def test_the_routing_sidecar_is_llm_ds_with_flags_of_its_release():
    sidecar_flags = declared_flags((UPSTREAM / "pkg/sidecar/proxy/options.go").read_text())
    for track in TRACKS:
        pod = manifest(f"deployment--nlp--{track}.yaml")["spec"]["template"]["spec"]
        sidecar = next(c for c in pod["containers"] if c["name"] == "routing-sidecar")
        assert sidecar["image"] == f"ghcr.io/llm-d/llm-d-router-disagg-sidecar:v{PINS['llm-d-router']}"
        # zap's flags come from controller-runtime, bound beside the sidecar's own.
        assert {f for f in flag_names(sidecar["args"]) if not f.startswith("zap-")} <= sidecar_flags
        assert {"--kv-connector=nixlv2", "--secure-proxy=false", "--enable-ssrf-protection=true",
                "--pool-group=inference.networking.k8s.io", f"--inference-pool=nlp/{track}"} <= set(sidecar["args"])
        assert sidecar["resources"]["limits"]["memory"] == sidecar["resources"]["requests"]["memory"]
        assert sidecar["securityContext"]["readOnlyRootFilesystem"] and sidecar["startupProbe"]["httpGet"]["path"] == "/health"
        # Only the sidecar holds an API token (to read its pool): the engine's container has none.
        assert pod["automountServiceAccountToken"] is False
        token_mounts = [c["name"] for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] == "api-token"]
        assert token_mounts == ["routing-sidecar"]
    role = manifest("role--nlp--assistant-routing.yaml")
    assert {(r["apiGroups"][0], r["resources"][0]) for r in role["rules"]} == {("", "pods"), ("inference.networking.k8s.io", "inferencepools")}
    assert all(set(r["verbs"]) == {"get", "list", "watch"} for r in role["rules"])
    binding = manifest("rolebinding--nlp--assistant-routing.yaml")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "assistant", "namespace": "nlp"}]
    api = manifest("networkpolicy--nlp--assistant-routing-api-server.yaml")["spec"]
    assert api["podSelector"]["matchLabels"] == {"llm-d.ai/role": "decode"}
    assert set(api["podSelector"]["matchExpressions"][0]["values"]) == set(TRACKS)


def test_the_picker_is_llm_ds_with_its_pd_profiles():
    reference = yaml.safe_load((UPSTREAM / "deploy/config/pd-epp-config.yaml").read_text())
    assert PD_EPP_CONFIG == reference
    epp_flags = (UPSTREAM / "pkg/epp/server/options.go").read_text()
    rejected = set(re.findall(r"^\s*\"([a-z-]+)\":\s*{},", epp_flags.split("deprecatedMetricFlags", 1)[1].split("}\n", 1)[0], re.M))
    assert "total-queued-requests-metric" in rejected
    health = set(re.findall(r"(?:Liveness|Readiness)CheckService\s*=\s*\"(\w+)\"", (UPSTREAM / "cmd/epp/runner/health.go").read_text()))
    for track in TRACKS:
        deployment = manifest(f"deployment--nlp--{track}-epp.yaml")["spec"]["template"]["spec"]
        [epp] = deployment["containers"]
        assert epp["image"] == f"ghcr.io/llm-d/llm-d-router-endpoint-picker:v{PINS['llm-d-router']}"
        names = {f for f in flag_names(epp["args"]) if not f.startswith("zap-")}
        assert names <= declared_flags(epp_flags) and not names & rejected
        assert {epp["readinessProbe"]["grpc"]["service"], epp["livenessProbe"]["grpc"]["service"]} == health
        config = yaml.safe_load(manifest(f"configmap--nlp--{track}-epp.yaml")["data"]["default-plugins.yaml"])
        # Upstream's sample, with the stack's threshold for prefilling apart.
        decider = next(p for p in config["plugins"] if p["type"] == "prefix-based-pd-decider")
        assert decider["parameters"] == {"nonCachedTokens": 16}
        assert {p["type"] for p in config["plugins"]} == {p["type"] for p in reference["plugins"]}
        assert config["schedulingProfiles"] == reference["schedulingProfiles"]


def test_the_kv_cache_moves_on_fixed_ports_left_out_of_the_mesh():
    w = parse_stack(stack_raw("staging")).llm.workloads[0]
    ports = kv_transfer_ports(w)
    for name in ("assistant", "assistant-prefill", "assistant-canary", "assistant-canary-prefill"):
        template = manifest(f"deployment--nlp--{name}.yaml")["spec"]["template"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in template["spec"]["containers"][0]["env"]}
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert int(env["VLLM_NIXL_SIDE_CHANNEL_PORT"]) == ports[0]
        assert env["UCX_TCP_PORT_RANGE"] == f"{ports[1]}-{ports[-1]}" and env["UCX_TLS"] == "tcp,cuda_copy"
        annotations = template["metadata"]["annotations"]
        for direction in ("Inbound", "Outbound"):
            assert [int(p) for p in annotations[f"traffic.sidecar.istio.io/exclude{direction}Ports"].split(",")] == ports
    # The sidecar reaches a prefill pod at its address on the pool's port: a headless Service gives the mesh each one.
    for track in TRACKS:
        service = manifest(f"service--nlp--{track}-prefill.yaml")
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"] == {"ml-platform.io/llm": f"{track}-prefill"}
        # TCP: the mesh listens on each address and port instead of routing by the Host header the sidecar keeps.
        assert service["spec"]["ports"] == [{"name": "tcp-engine", "port": ENGINE_PORT, "targetPort": ENGINE_PORT, "protocol": "TCP", "appProtocol": "tcp"}]
        assert service["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    # Istio takes a pod port's protocol from the oldest Service on it: this one, before the pool's shadow Service.
    s = synth_of("staging")
    for role in ("stable", "canary"):
        assert s.depends_on(s.one("kubernetes:inference.networking.k8s.io/v1:InferencePool", f"nlp-assistant-{role}-pool"),
                            s.one("kubernetes:core/v1:Service", f"nlp-assistant-{role}-prefill"))


def test_a_prefill_deployment_of_one_pod_is_not_a_serving_outage():
    """The decode pods serve without prefill pods (llm-d's profile handler needs only a decode result): the pack does
    not hold a prefill Deployment of one pod against the workload, and would any other serving Deployment."""
    import copy

    from infra.offline.policy_check import check

    rule = next(r for r in RULES if r.name == "serving-highly-available")
    flagged = lambda records: [v["message"] for v in check(records, "staging", rules=[rule])["violations"] if "prefill" in v["message"]]  # noqa: E731
    records = copy.deepcopy(synth_of("staging").resources)
    assert flagged(records) == []
    prefill = next(r for r in records if r["name"] == "nlp-assistant-stable-prefill")
    del prefill["outputs"]["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"]
    assert flagged(records) == ["serving Deployment nlp/assistant-prefill may run a single replica"]


@pytest.mark.parametrize("mutate, message", [
    (lambda w: w.update(accelerator="neuron", image="public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.9.1"),
     "ml-platform:llm.workloads[0].disaggregation on neuron: the KV cache moves between pods through NIXL"),
    (lambda w: w.update(parallelism={"pipeline": 2}), "ml-platform:llm.workloads[0].disaggregation with parallelism.pipeline > 1"),
    (lambda w: w["disaggregation"].update(prefillReplicas=0), "ml-platform:llm.workloads[0].disaggregation.prefillReplicas"),
])
def test_bad_disaggregation_names_the_key(mutate, message):
    assert message in error_of(lambda raw: mutate(raw["llm"]["workloads"][0]), stack="staging")


def test_prefill_pods_count_in_the_team_quota():
    from infra.lib import headroom

    raw = stack_raw("staging")
    cfg = parse_stack(raw)
    w, team = cfg.llm.workloads[0], cfg.teams[0]
    # 3 stable and 1 canary decode pods at their most, and one prefill pod per version.
    assert w.max_pods == 4 + 2
    undivided = copy.deepcopy(raw)
    del undivided["llm"]["workloads"][0]["disaggregation"]
    before, after = headroom.outside_queue(parse_stack(undivided), team), headroom.outside_queue(cfg, team)
    # Each version's prefill pod and its rollout's extra pod, a GPU each; the routing sidecar in each decode pod.
    assert after["nvidia.com/gpu"] - before["nvidia.com/gpu"] == 4
    decode_pods = (3 + 1) + (1 + 1)
    assert after["cpu"] - before["cpu"] == 4 * (2000 + headroom.SIDECAR_CPU_MILLI) + decode_pods * headroom.PD_SIDECAR_CPU_MILLI


def test_the_threshold_for_prefilling_apart_is_the_stacks():
    raw = copy.deepcopy(stack_raw("staging"))
    raw["llm"]["workloads"][0]["disaggregation"]["nonCachedTokens"] = 256
    config = pd_epp_config(parse_stack(raw).llm.workloads[0])
    assert next(p for p in config["plugins"] if p["type"] == "prefix-based-pd-decider")["parameters"] == {"nonCachedTokens": 256}
    assert PD_EPP_CONFIG["plugins"][-1]["parameters"] == {"nonCachedTokens": 16}
