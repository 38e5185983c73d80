"""LLM serving as synthesized: vLLM engines, InferencePools and their endpoint pickers, the weighted route, metrics,
autoscaling on the engine's queue, LeaderWorkerSet for multi-node replicas, and the settings' errors."""
from __future__ import annotations

import copy

import pytest
import yaml

from infra.config import ConfigError
from infra.config.llm import NEURON_CORES_PER_DEVICE, NEURON_VLLM_IMAGE, LlmWorkload
from infra.lib.gang import LOCAL_QUEUE
from infra.lib.metrics import CUSTOM_METRICS, VLLM_SERIES
from tests.conftest import ROOT, synth_of
from tests.test_config import parse_stack, stack_raw

NVIDIA_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def manifest(stack: str, name: str) -> dict:
    return synth_of(stack).result.manifests[name]


def test_staging_runs_vllm_on_one_gpu_of_the_nvidia_pool():
    pod = manifest("staging", "deployment--nlp--assistant.yaml")["spec"]["template"]["spec"]
    engine = pod["containers"][0]
    assert engine["image"] == "vllm/vllm-openai:v0.12.0"
    assert pod["nodeSelector"] == {"ml-platform.io/pool": "nvidia"}
    assert pod["tolerations"] == [NVIDIA_TOLERATION]
    resources = engine["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["memory"] == resources["requests"]["memory"] and "cpu" not in resources["limits"]
    assert engine["args"][0] == "/models/qwen2-5-1-5b-instruct/1"
    assert engine["args"][engine["args"].index("--tensor-parallel-size") + 1] == "1"
    assert engine["args"][engine["args"].index("--gpu-memory-utilization") + 1] == "0.9"
    # Staging's engines are disaggregated: this decode engine answers behind its routing sidecar.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert engine[probe]["httpGet"] == {"path": "/health", "port": "engine"}
    assert engine["securityContext"]["readOnlyRootFilesystem"] and engine["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    # Weights from the team's store, read-only; the engine waits for the download's marker.
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert ".complete" in pod["initContainers"][0]["command"][-1]


def test_nothing_that_waits_for_weights_blocks_the_deploy():
    staging = synth_of("staging")
    download = staging.one("kubernetes:batch/v1:Job", "nlp-download-qwen2-5-1-5b-instruct-1")
    engine = staging.one("kubernetes:apps/v1:Deployment", "nlp-assistant-stable-engine")
    for r in (download, engine):
        assert r["inputs"]["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert staging.depends_on(engine, download)
    # The download writes the store (read-write claim) from the cpu pool, through the team's queue.
    job = manifest("staging", "job--nlp--download-qwen2-5-1-5b-instruct-1.yaml")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == LOCAL_QUEUE
    assert "989aa7980e4cf806f80c7fef2b1adb7bc71aa306" in job["spec"]["template"]["spec"]["containers"][0]["command"]


def test_the_route_splits_by_weight_between_inference_pools_with_their_pickers():
    m = synth_of("staging").result.manifests
    rule = m["httproute--nlp--assistant.yaml"]["spec"]["rules"][0]
    assert rule["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "assistant", "weight": 90},
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "assistant-canary", "weight": 10},
    ]
    for name in ("assistant", "assistant-canary"):
        pool = m[f"inferencepool--nlp--{name}.yaml"]["spec"]
        engines = m[f"deployment--nlp--{name}.yaml"]["spec"]["template"]["metadata"]["labels"]
        assert all(engines[k] == v for k, v in pool["selector"]["matchLabels"].items())
        assert pool["targetPorts"] == [{"number": 8000}]
        picker = pool["endpointPickerRef"]
        service = m[f"service--nlp--{picker['name']}.yaml"]["spec"]
        assert {"name": "grpc-ext-proc", "port": picker["port"]["number"], "targetPort": 9002, "protocol": "TCP"} in service["ports"]
        epp = m[f"deployment--nlp--{picker['name']}.yaml"]["spec"]["template"]
        assert all(epp["metadata"]["labels"][k] == v for k, v in service["selector"].items())
        args = epp["spec"]["containers"][0]["args"]
        assert args[args.index("--pool-name") + 1] == name and "--secure-serving=false" in args
        assert epp["spec"]["nodeSelector"] == {"ml-platform.io/pool": "cpu"}
        # Team namespaces deny egress inside the VPC but to themselves: the picker may reach the API server's endpoint.
        policy = m[f"networkpolicy--nlp--{picker['name']}-api-server.yaml"]["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= epp["metadata"]["labels"].items()
        assert policy["egress"] == [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}]


def test_the_canary_serves_the_new_model_version():
    m = synth_of("staging").result.manifests
    canary = m["deployment--nlp--assistant-canary.yaml"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert canary[0] == "/models/qwen2-5-3b-instruct/1"
    assert synth_of("staging").result.outputs["llmEndpoints"]["nlp/assistant"]["versions"] == {
        "stable": "qwen2-5-1-5b-instruct@1", "canary": "qwen2-5-3b-instruct@1", "canaryWeight": 10,
    }


def test_istio_routes_to_inference_pools():
    for stack in ("dev", "staging", "prod"):
        synth = synth_of(stack)
        istiod = synth.release("istiod")
        assert istiod["inputs"]["values"]["env"]["ENABLE_GATEWAY_API_INFERENCE_EXTENSION"] == "true"
        crd = synth.one("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition", "mesh-inference-pool-crds:inferencepools.inference.networking.k8s.io")
        assert synth.depends_transitively(istiod, crd)
    staging = synth_of("staging")
    crd = staging.one("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition", "mesh-inference-pool-crds:inferencepools.inference.networking.k8s.io")
    pool = staging.one("kubernetes:inference.networking.k8s.io/v1:InferencePool", "nlp-assistant-stable-pool")
    route = staging.one("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "nlp-assistant-llm-route")
    assert staging.depends_transitively(pool, crd) and staging.depends_transitively(route, crd)


def test_vllm_metrics_are_scraped_once_and_autoscale_the_engines():
    staging = synth_of("staging")
    m = staging.result.manifests
    monitor = m["servicemonitor--nlp--assistant-llm.yaml"]["spec"]
    endpoint = monitor["endpoints"][0]
    assert endpoint["metricRelabelings"] == [{"action": "keep", "sourceLabels": ["__name__"], "regex": VLLM_SERIES}]
    metrics_service = m["service--nlp--assistant-metrics.yaml"]["spec"]
    assert metrics_service["ports"][0]["name"] == endpoint["port"] and metrics_service["ports"][0]["targetPort"] == 15020
    mesh = m["podmonitor--monitoring--envoy-sidecars.yaml"]["spec"]["podMetricsEndpoints"][0]
    assert {"action": "drop", "sourceLabels": ["__name__"], "regex": VLLM_SERIES} in mesh["metricRelabelings"]
    hpa = m["horizontalpodautoscaler--nlp--assistant.yaml"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "assistant"}
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "vllm_queue_depth"
    adapter = staging.release("prometheus-adapter")
    assert CUSTOM_METRICS["vllm_queue_depth"].rule in adapter["inputs"]["values"]["rules"]["custom"]
    hpa_resource = staging.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "nlp-assistant-stable-hpa")
    assert staging.depends_on(hpa_resource, adapter)


def test_alerts_and_dashboard_read_vllm_series():
    m = synth_of("staging").result.manifests
    rules = m["prometheusrule--monitoring--ml-platform-llm-alerts.yaml"]["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"LlmQueueBacklog", "LlmKvCacheSaturated", "LlmTimeToFirstTokenHigh"}
    board = m["configmap--monitoring--dashboard-ml-llm.yaml"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    exprs = " ".join(p["targets"][0]["expr"] for p in yaml.safe_load(board["data"]["ml-llm.json"])["panels"])
    for series in ("vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket", "vllm:generation_tokens_total",
                   "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert series in exprs


def test_prod_spans_nodes_with_a_leader_worker_set():
    prod = synth_of("prod")
    lws = prod.release("lws")
    assert lws["inputs"]["version"] == "0.10.0" and lws["inputs"]["namespace"] == "lws-system"
    assert "nodeSelector" not in lws["inputs"]["values"]
    assert prod.depends_on(lws, prod.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool"))
    group = prod.one("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "nlp-assistant-stable-engine")
    assert prod.depends_on(group, lws)
    spec = prod.result.manifests["leaderworkerset--nlp--assistant.yaml"]["spec"]
    template = spec["leaderWorkerTemplate"]
    assert template["size"] == 2
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    assert leader["args"][leader["args"].index("--pipeline-parallel-size") + 1] == "2"
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "readinessProbe" not in template["workerTemplate"]["spec"]["containers"][0]
    # Only each group's leader serves: the pool, the metrics and the scrape annotations are the leader's.
    assert "annotations" not in template["workerTemplate"]["metadata"]
    pool = prod.result.manifests["inferencepool--nlp--assistant.yaml"]["spec"]
    assert pool["selector"]["matchLabels"] == {"ml-platform.io/llm": "assistant", "leaderworkerset.sigs.k8s.io/worker-index": "0"}
    # The leader is ready only once its workers joined: they start with it, not after it.
    assert spec["startupPolicy"] == "LeaderCreated"
    hpa = prod.result.manifests["horizontalpodautoscaler--nlp--assistant.yaml"]["spec"]
    assert hpa["scaleTargetRef"]["kind"] == "LeaderWorkerSet" and hpa["metrics"][0]["pods"]["metric"]["name"] == "vllm_kv_cache_usage"
    # The controller renders from the vendored chart, its image at the release, not the chart's `main`.
    rendered = [r for r in prod.result.rendered if r["chartRendered"]["release"] == "lws" and r["type"] == "kubernetes:apps/v1:Deployment"]
    image = rendered[0]["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":v0.10.0")


def test_no_llm_no_endpoints_output_and_no_lws():
    dev = synth_of("dev")
    assert "llmEndpoints" not in dev.result.outputs
    assert not [r for r in dev.of_type("kubernetes:helm.sh/v3:Release") if r["inputs"]["name"] == "lws"]
    assert synth_of("staging").result.outputs["llmEndpoints"]["nlp/assistant"]["url"].endswith("/llm/assistant/v1")


def llm_error(mutate, stack: str = "staging") -> str:
    raw = copy.deepcopy(stack_raw(stack))
    mutate(raw["llm"]["workloads"][0])
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)


def test_tensor_parallelism_beyond_one_node_is_refused_naming_the_key():
    message = llm_error(lambda w: w.update(parallelism={"tensor": 4}))
    assert "ml-platform:llm.workloads[0].parallelism.tensor 4 exceeds the GPUs of any one node of the nvidia pool" in message
    assert "g6e.xlarge: 1" in message


def test_an_inference_pool_without_endpoint_picker_is_refused():
    message = llm_error(lambda w: w.update(inferencePool={"endpointPicker": None}))
    assert "ml-platform:llm.workloads[0]" in message and "inferencePool.endpointPicker is null" in message


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_canary_weight_outside_0_to_100_is_refused(weight):
    message = llm_error(lambda w: w["canary"].update(weight=weight))
    assert "ml-platform:llm.workloads[0].canary.weight" in message


def test_a_neuron_engine_defaults_to_aws_vllm_build_for_the_generations_served():
    """The Neuron Deep Learning Containers' README lists each vLLM build with the instance types it supports: the
    default is one for every family the platform serves on."""
    readme = (ROOT / "schemas/upstream/neuron-dlc" / NEURON_VLLM_IMAGE.split(":", 1)[1] / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.rstrip(" |").endswith(NEURON_VLLM_IMAGE)]
    supported = set(row.split("|")[4].strip().split(","))
    assert {family.removesuffix("n") for family in NEURON_CORES_PER_DEVICE} <= supported
    raw = copy.deepcopy(stack_raw("staging")["llm"]["workloads"][0])
    raw.update(accelerator="neuron")
    del raw["disaggregation"]
    assert LlmWorkload.model_validate(raw).engine_image == NEURON_VLLM_IMAGE
    assert LlmWorkload.model_validate({**raw, "image": "registry.example/vllm-neuron:1.0"}).engine_image == "registry.example/vllm-neuron:1.0"
    # vLLM compiles for Neuron at start: into /tmp, the store and the root filesystem being read-only; no prefix
    # caching, which its Neuron plugin refuses without a block size.
    from infra.lib.llm_engines import engine_args, engine_pod_spec

    w = LlmWorkload.model_validate(raw)
    args = engine_args(w, w.model)
    assert "--no-enable-prefix-caching" in args and "--gpu-memory-utilization" not in args
    [engine] = engine_pod_spec(parse_stack(stack_raw("staging")), w, w.model, w.engine_image, "stable", None, "nlp").containers
    env = {e.name: e.value for e in engine.env}
    assert env["NEURON_COMPILED_ARTIFACTS"].startswith("/tmp/") and env["NEURON_COMPILE_CACHE_URL"].startswith("/tmp/")
    assert engine.working_dir == "/tmp" and engine.resources.requests["aws.amazon.com/neuron"] == "1"


def test_serving_workloads_cannot_scale_on_vllm_metrics():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["workloads"][0]["autoscaling"].update(customMetric="vllm_queue_depth", customMetricTarget="5")
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "exposed by vllm engines only" in str(exc.value)


def test_tensor_parallelism_on_neuron_counts_neuroncores_of_one_node():
    image = "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:example"
    # prod's neuron pool: inf2.xlarge and inf2.8xlarge carry one Inferentia2 device (two NeuronCores) each; inf1 none.
    ok = copy.deepcopy(stack_raw("prod"))
    ok["llm"]["workloads"][0].update(accelerator="neuron", image=image, parallelism={"tensor": 2})
    cfg = parse_stack(ok)
    assert cfg.llm.workloads[0].accelerators_per_pod() == 1
    message = llm_error(lambda w: w.update(accelerator="neuron", image=image, parallelism={"tensor": 4}), stack="prod")
    assert "llm.workloads[0].parallelism.tensor 4 exceeds the NeuronCores" in message and "inf2.8xlarge: 2" in message and "inf1.xlarge: 0" in message
