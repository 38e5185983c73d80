"""GPUs through Dynamic Resource Allocation, the option: synthesized once with accelerators.gpuOperator.dra on."""
from __future__ import annotations

import pytest
import yaml

from infra.lib.accelerators import GPU_DEVICE_CLASS, POOL_LABEL
from infra.lib.headroom import with_borrowing
from infra.synth import synthesize
from tests.conftest import ROOT, lean
from tests.schemas import validate
from tests.test_config import parse_stack, stack_raw

DRA_ON = "  ml-platform:accelerators:\n    gpuOperator:\n      dra: {enabled: true}\n"


@pytest.fixture(scope="module")
def dra(tmp_path_factory):
    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text().replace("  ml-platform:scheduling:\n", DRA_ON + "  ml-platform:scheduling:\n", 1)
    # A distributed run is a TrainJob, which requests GPUs through the device plugin only (refused with DRA on).
    doc = yaml.safe_load(text)
    # Staging's classic model as KServe serves it: its predictors claim their GPUs too.
    lean(doc["config"], llm=True, kserve=True)
    doc["config"]["ml-platform:workloads"] = [w for w in doc["config"]["ml-platform:workloads"] if w.get("workers", 1) == 1]
    text = yaml.safe_dump(doc, sort_keys=False)
    path = tmp_path_factory.mktemp("dra") / "Pulumi.staging.yaml"
    path.write_text(text)
    result = synthesize("staging", path)
    assert result.mandatory_violations == []
    return result


def pod_spec(manifest: dict) -> dict | None:
    spec = manifest.get("spec") or {}
    paths = {
        "Deployment": ("template",),
        "CronJob": ("jobTemplate", "spec", "template"),
    }
    if manifest["kind"] == "InferenceService":
        return spec["predictor"]
    if manifest["kind"] not in paths:
        return None
    for step in paths[manifest["kind"]]:
        spec = spec[step]
    return spec["spec"]


def release(result, name: str) -> dict:
    [found] = [r for r in result.resources if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["name"] == name]
    return found


def test_the_dra_driver_publishes_gpus_and_the_device_plugin_steps_aside(dra):
    driver = release(dra, "dra-driver-nvidia-gpu")
    values = driver["inputs"]["values"]
    assert values["gpuResourcesEnabledOverride"] is True and values["resources"] == {"gpus": {"enabled": True}, "computeDomains": {"enabled": False}}
    assert values["resourceApiVersion"] == "resource.k8s.io/v1"
    operator = release(dra, "gpu-operator")
    assert operator["inputs"]["values"]["devicePlugin"]["enabled"] is False
    assert operator["urn"] in driver["dependencies"]


def test_every_nvidia_pod_claims_its_gpu_instead_of_requesting_it(dra):
    templates = {r["inputs"]["metadata"]["name"]: r for r in dra.resources if r["type"] == "kubernetes:resource.k8s.io/v1:ResourceClaimTemplate"}
    assert templates
    pods = []
    for manifest in dra.manifests.values():
        spec = pod_spec(manifest)
        if not spec or (spec.get("nodeSelector") or {}).get(POOL_LABEL) != "nvidia":
            continue
        pods.append(manifest["kind"])
        [claim] = spec["resourceClaims"]
        template = templates[claim["resourceClaimTemplateName"]]["inputs"]["spec"]["spec"]["devices"]["requests"][0]
        assert template["exactly"] == {"deviceClassName": GPU_DEVICE_CLASS, "count": 1}
        container = spec["containers"][0]["resources"]
        assert "nvidia.com/gpu" not in container.get("requests", {}) and container["claims"] == [{"name": claim["name"]}]
    # The fine-tune, sentiment's stable and canary InferenceServices (staging serves classic models through KServe),
    # the LLM's stable and canary decode and prefill engines (the distributed run is a TrainJob).
    assert sorted(pods) == ["CronJob", "Deployment", "Deployment", "Deployment", "Deployment", "InferenceService", "InferenceService"]
    for manifest in dra.manifests.values():
        if manifest["kind"] in ("ResourceClaimTemplate", "InferenceService"):
            validate(manifest)


def test_quota_and_queue_count_claimed_gpus(dra):
    team = parse_stack(stack_raw("staging")).teams[0]
    [quota] = [r for r in dra.resources if r["type"] == "kubernetes:core/v1:ResourceQuota"]
    assert quota["inputs"]["spec"]["hard"][f"{GPU_DEVICE_CLASS}.deviceclass.resource.k8s.io/devices"] == str(with_borrowing(team.quota.nvidia_gpus, 25))
    config = yaml.safe_load(release(dra, "kueue")["inputs"]["values"]["managerConfig"]["controllerManagerConfigYaml"])
    assert config["resources"]["deviceClassMappings"] == [{"name": "nvidia.com/gpu", "deviceClassNames": [GPU_DEVICE_CLASS]}]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["cluster"].update(kubernetesVersion="1.33", addons={"kubeProxy": "v1.33.3-eksbuild.4"}), "accelerators.gpuOperator.dra needs Kubernetes 1.34 or newer"),
        (lambda r: r["accelerators"]["gpuOperator"].update(sharing={"strategy": "timeSlicing"}), "dra.enabled with sharing.strategy 'timeSlicing'"),
        (lambda r: r["workloads"][0].update(acceleratorCount=2), "workloads[0].acceleratorCount 2 with DRA: claim one GPU per pod"),
    ],
)
def test_dra_refuses_what_it_cannot_serve(mutate, expected):
    raw = stack_raw("staging")
    raw["accelerators"] = {"gpuOperator": {"dra": {"enabled": True}}}
    mutate(raw)
    with pytest.raises(Exception) as exc:
        parse_stack(raw)
    assert expected in str(exc.value)


def test_the_contract_tells_app_teams_to_claim_instead_of_request(dra):
    pool = dra.outputs["nodePools"]["nvidia"]
    assert "extendedResource" not in pool and pool["deviceClass"] == GPU_DEVICE_CLASS
