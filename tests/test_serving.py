"""KServe serving: the controllers in the graph, InferenceServices per version against the vendored CRD, the route,
autoscalers and placement, the config errors, the policies and the outputs; and the hand-built path where chosen."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from infra import contract
from infra.config import ConfigError, ServingWorkload
from infra.offline.policy_check import check
from policies.rules import RULES
from tests.conftest import synth_of
from tests.schemas import validate
from tests.test_config import parse_stack, stack_raw

RELEASE = "kubernetes:helm.sh/v3:Release"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def isvcs(stack: str) -> dict[str, dict]:
    return {r["name"]: r for r in synth_of(stack).of_type(ISVC)}


def rendered(stack: str, release: str, kind: str, name: str) -> dict:
    [obj] = [r["inputs"] for r in synth_of(stack).result.rendered
             if r["chartRendered"]["release"] == release and r["type"].endswith(f":{kind}") and r["inputs"]["metadata"]["name"] == name]
    return obj


def test_staging_serves_the_sentiment_model_through_kserve_with_its_canary():
    staging = synth_of("staging")
    found = isvcs("staging")
    assert set(found) == {"nlp-sentiment-stable-isvc", "nlp-sentiment-canary-isvc"}
    for r in found.values():
        validate(r["inputs"])
        meta = r["inputs"]["metadata"]
        assert meta["namespace"] == "nlp"
        assert meta["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
        assert meta["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
        assert meta["annotations"]["pulumi.com/skipAwait"] == "true"
    stable = found["nlp-sentiment-stable-isvc"]["inputs"]["spec"]["predictor"]
    canary = found["nlp-sentiment-canary-isvc"]["inputs"]["spec"]["predictor"]
    assert stable["containers"][0]["image"].endswith("sentiment-service:1.0.0-cuda")
    assert canary["containers"][0]["image"].endswith("sentiment-service:1.1.0-cuda")
    [route] = [r for r in staging.of_type(ROUTE) if r["name"] == "nlp-sentiment-route"]
    assert route["inputs"]["spec"]["rules"][0]["backendRefs"] == [
        {"name": "sentiment-predictor", "port": 80, "weight": 90},
        {"name": "sentiment-canary-predictor", "port": 80, "weight": 10},
    ]
    # The hand-built objects are not created beside it.
    assert not [r for r in staging.of_type("kubernetes:apps/v1:Deployment") if r["name"].startswith("nlp-sentiment")]


def test_the_predictor_is_placed_secured_and_probed_like_the_hand_built_pod():
    p = isvcs("staging")["nlp-sentiment-stable-isvc"]["inputs"]["spec"]["predictor"]
    c = p["containers"][0]
    assert c["name"] == "kserve-container" and c["ports"][0] == {"name": "http", "containerPort": 5000, "protocol": "TCP"}
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"] and "cpu" not in c["resources"]["limits"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c)
    assert p["nodeSelector"] == {"ml-platform.io/pool": "nvidia"}
    assert p["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert p["priorityClassName"] == "ml-serving" and p["automountServiceAccountToken"] is False
    assert p["initContainers"][0]["name"] == "wait-for-model"
    assert {"name": "MODEL_DIR", "value": "/models/sentiment-base/1"} in c["env"]


def test_the_neuron_model_is_a_custom_predictor_on_its_instance_family():
    from components.serving import inference_service

    # dev's Neuron workload (dev serves on the hand-built path), as KServe would serve it.
    [w] = [w for w in parse_stack(stack_raw("dev")).workloads if isinstance(w, ServingWorkload)]
    isvc = inference_service(w, w.tracks()[0], "nlp", {})
    validate({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", **isvc})
    p = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/model-format"] == "neuron"
    assert p["nodeSelector"] == {"ml-platform.io/pool": "neuron", "karpenter.k8s.aws/instance-family": "inf2"}
    assert p["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert "--target" in p["initContainers"][0]["command"]


def test_a_registry_reference_is_fetched_as_on_the_hand_built_path():
    """Both paths resolve a version through infra/lib/model_source.py: the same fetch, volume, mount and MODEL_DIR."""
    from components.serving import ServedModel, inference_service
    from components.workloads import serving_pod_spec
    from infra.config import MLFLOW_IMAGE
    from infra.lib.model_source import as_manifest
    from infra.outputs import _served_workload

    raw = copy.deepcopy(stack_raw("staging"))
    raw["workloads"][0].pop("model")
    raw["workloads"][0].update(registry={"model": "sentiment", "alias": "canary", "sizeGib": 4},
                               canary={"weight": 10, "stable": {"registry": {"model": "sentiment", "version": 3}}})
    w = parse_stack(raw).workloads[0]
    for track in w.tracks():
        isvc = inference_service(w, track, "nlp", {}, registry_image=MLFLOW_IMAGE)
        validate({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", **isvc})
        predictor = isvc["spec"]["predictor"]
        pod = as_manifest(serving_pod_spec(w, track, w.name, registry_image=MLFLOW_IMAGE))
        assert predictor["initContainers"] == pod["initContainers"]
        assert predictor["initContainers"][0]["command"][4] == track.registry.uri
        assert [v for v in predictor["volumes"] if v["name"] == "registry-model"] == [v for v in pod["volumes"] if v["name"] == "registry-model"]
        container, hand_built = predictor["containers"][0], pod["containers"][0]
        assert container["volumeMounts"] == hand_built["volumeMounts"]
        assert {"name": "MODEL_DIR", "value": f"/models/sentiment/{track.registry.selector}"} in container["env"]
        assert isvc["metadata"]["labels"]["ml-platform.io/model"] == f"sentiment-{track.registry.selector}"
    # The outputs name the registered versions as the hand-built path's do.
    ref = lambda t: {"model": "sentiment", "version": 3 if t == "stable" else None, "alias": None if t == "stable" else "canary"}  # noqa: E731
    served = ServedModel("sentiment", "nlp", "nlp", "sentiment", None, {t: {"service": t, "model": None, "registry": ref(t), "weight": 50} for t in ("stable", "canary")})
    models = _served_workload(served)["models"]
    assert (models["stableRegistry"], models["canaryRegistry"], models["stable"]) == (ref("stable"), ref("canary"), None)
    # ... and the contract's serving output takes a registered version in place of a store model.
    version = {"service": "sentiment-predictor", "endpoint": "http://sentiment-predictor.nlp.svc.cluster.local", "weight": 100,
               "inferenceService": "sentiment", "registry": {"model": "sentiment", "version": 3}}
    serving = {"engine": "kserve", "models": {"nlp/sentiment": {"url": "http://gw/sentiment", "namespace": "nlp", "versions": {"stable": version}}}}
    jsonschema.Draft202012Validator({**contract.load(), "required": []}).validate({"serving": serving})


def test_each_version_autoscales_its_predictor_deployment():
    staging = synth_of("staging")
    hpas = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in staging.of_type(HPA) if r["name"].startswith("nlp-sentiment-")}
    assert hpas["sentiment"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sentiment-predictor"}
    assert (hpas["sentiment"]["minReplicas"], hpas["sentiment"]["maxReplicas"]) == (2, 3)
    assert (hpas["sentiment-canary"]["minReplicas"], hpas["sentiment-canary"]["maxReplicas"]) == (1, 1)
    assert hpas["sentiment"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_a_custom_metric_scales_through_the_adapter():
    from components.serving import hpa_spec

    raw = stack_raw("prod")
    [w] = [w for w in parse_stack(raw).workloads if isinstance(w, ServingWorkload)]
    spec = hpa_spec(w, w.tracks()[0])
    assert spec["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "20"}}}]


def test_controllers_come_before_what_they_admit_and_run_on_the_cpu_pool():
    staging = synth_of("staging")
    cert_manager, crds, kserve = (staging.release(n) for n in ("cert-manager", "kserve-crd", "kserve"))
    cpu_pool = staging.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool")
    assert staging.depends_on(kserve, cert_manager) and staging.depends_on(kserve, crds)
    assert staging.depends_on(kserve, cpu_pool) and staging.depends_on(cert_manager, cpu_pool)
    for r in isvcs("staging").values():
        assert staging.depends_on(r, kserve)
    for release in ("kserve", "cert-manager"):
        for r in staging.result.rendered:
            if r["chartRendered"]["release"] == release and r["type"] == "kubernetes:apps/v1:Deployment":
                assert "eks.amazonaws.com/nodegroup" not in (r["inputs"]["spec"]["template"]["spec"].get("nodeSelector") or {}), r["name"]


def test_kserve_is_configured_for_standard_mode_and_the_platform_gateway():
    config = rendered("staging", "kserve", "ConfigMap", "inferenceservice-config")["data"]
    assert json.loads(config["deploy"]) == {"defaultDeploymentMode": "Standard"}
    ingress = json.loads(config["ingress"])
    assert ingress["enableGatewayApi"] is True and ingress["disableIngressCreation"] is True
    parent = synth_of("staging").of_type(ROUTE)[0]["inputs"]["spec"]["parentRefs"][0]
    assert ingress["kserveIngressGateway"] == f"{parent['namespace']}/{parent['name']}"
    # The defaulter adds no CPU limit to a predictor container, and no API token to a pod that does not ask for one.
    assert json.loads(config["inferenceService"])["resource"]["cpuLimit"] == ""
    assert json.loads(config["security"]) == {"autoMountServiceAccountToken": False}
    # cert-manager issues the webhook certificate the controller mounts.
    cert = rendered("staging", "kserve", "Certificate", "serving-cert")
    assert cert["spec"]["secretName"] == "kserve-webhook-server-cert"


def test_images_of_the_controllers_are_the_pins():
    images = {c["image"] for r in synth_of("staging").result.rendered if r["chartRendered"]["release"] in ("kserve", "cert-manager")
              for c in (r["inputs"].get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [])}
    assert "kserve/kserve-controller:v0.20.0" in images
    assert {i for i in images if "jetstack" in i} == {f"quay.io/jetstack/cert-manager-{n}:v1.21.1" for n in ("controller", "webhook", "cainjector", "startupapicheck")}


def test_prod_keeps_the_hand_built_path():
    prod = synth_of("prod")
    assert not prod.of_type(ISVC)
    assert not [r for r in prod.of_type(RELEASE) if r["inputs"]["name"] in ("kserve", "cert-manager")]
    assert prod.one("kubernetes:apps/v1:Deployment", "nlp-sentiment-stable")


def test_outputs_give_the_endpoint_of_each_version():
    staging = synth_of("staging").result.outputs["serving"]
    assert staging["engine"] == "kserve"
    versions = staging["models"]["nlp/sentiment"]["versions"]
    assert versions["stable"] == {"inferenceService": "sentiment", "service": "sentiment-predictor", "weight": 90, "model": "sentiment-base@1",
                                  "endpoint": "http://sentiment-predictor.nlp.svc.cluster.local"}
    assert versions["canary"]["endpoint"] == "http://sentiment-canary-predictor.nlp.svc.cluster.local"
    prod = synth_of("prod").result.outputs["serving"]
    assert prod["engine"] == "deployment"
    assert prod["models"]["nlp/sentiment"]["versions"]["stable"]["endpoint"] == "http://sentiment.nlp.svc.cluster.local"
    assert synth_of("staging").result.outputs["workloads"]["nlp/sentiment"]["service"] == "sentiment-predictor"


def _error(mutate) -> str:
    raw = copy.deepcopy(stack_raw("staging"))
    mutate(raw["workloads"][0])
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)


def test_a_model_format_without_a_runtime_names_the_key():
    msg = _error(lambda w: w.update(modelFormat="onnx"))
    assert "ml-platform:workloads[0].modelFormat" in msg and "no serving runtime on this platform for model format 'onnx'" in msg


def test_a_format_on_a_pool_its_runtime_does_not_serve_names_the_key():
    msg = _error(lambda w: w.update(modelFormat="neuron"))
    assert "ml-platform:workloads[0].modelFormat 'neuron' is not served on nvidia" in msg


@pytest.mark.parametrize("weight", [101, -1])
def test_a_canary_weight_outside_its_range_names_the_key(weight):
    msg = _error(lambda w: w["canary"].update(weight=weight))
    assert "ml-platform:workloads[0].canary.weight" in msg


def _broken_isvc(mutate) -> list[dict]:
    # Only the changed record is copied: the shared synth's records stay as they are.
    records = list(synth_of("staging").resources)
    i = next(i for i, r in enumerate(records) if r["type"] == ISVC and r["name"] == "nlp-sentiment-stable-isvc")
    target = records[i] = copy.deepcopy(records[i])
    mutate(target["inputs"])
    target["outputs"] = copy.deepcopy(target["inputs"])
    return records


RULES_BY_NAME = {r.name: r for r in RULES}


@pytest.mark.parametrize("rule, mutate", [
    ("image-pinned", lambda i: i["spec"]["predictor"]["containers"][0].update(image="111122223333.dkr.ecr.us-west-2.amazonaws.com/sentiment-service:latest")),
    ("image-pinned", lambda i: i["spec"]["predictor"]["initContainers"][0].update(image="sentiment-service")),
    ("inference-service-in-team-namespace", lambda i: i["metadata"].update(namespace="kserve")),
    ("accelerator-toleration", lambda i: i["spec"]["predictor"].pop("tolerations")),
    ("serving-probes", lambda i: i["spec"]["predictor"]["containers"][0].pop("startupProbe")),
    ("serving-highly-available", lambda i: i["metadata"].update(name="sentiment-unguarded")),
])
def test_the_pack_judges_inference_services(rule, mutate):
    found = check(_broken_isvc(mutate), "staging", rules=[RULES_BY_NAME[rule]])["violations"]
    assert [v["urn"].rsplit("::", 1)[-1] for v in found] == ["nlp-sentiment-stable-isvc"]


def test_the_status_command_follows_kserve_predictors():
    """`infra/status.py` reads the route's backends as Deployments: KServe names a predictor's Deployment as its Service."""
    from infra.status import Snapshot, check_models, check_serving

    staging = synth_of("staging")
    outputs = copy.deepcopy(staging.result.outputs)
    route = copy.deepcopy(staging.result.manifests["httproute--nlp--sentiment.yaml"])
    route["status"] = {"parents": [{"parentRef": {"name": "ml-gateway"}, "conditions": [
        {"type": "Accepted", "status": "True"}, {"type": "ResolvedRefs", "status": "True"}]}]}
    isvc_labels = {i["metadata"]["name"]: i["metadata"]["labels"] for i in staging.result.manifests.values() if i["kind"] == "InferenceService"}

    def predictor(isvc: str) -> dict:
        # What KServe creates: the InferenceService's labels on a Deployment <isvc>-predictor.
        return {"metadata": {"name": f"{isvc}-predictor", "namespace": "nlp", "labels": isvc_labels[isvc], "generation": 1},
                "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}}

    snap = Snapshot(nodepools=[], nodeclaims=[], deployments=[predictor("sentiment"), predictor("sentiment-canary")], daemonsets=[],
                    lifecycle_jobs=[], httproutes=[route], clusterqueues=None, localqueues=None)
    [serving] = check_serving(outputs, snap)
    assert serving.ready, serving.detail
    assert "sentiment-predictor 90%" in serving.detail and "canary 10%" in serving.detail
    [model] = check_models(outputs, snap)
    assert model.ready, model.detail
