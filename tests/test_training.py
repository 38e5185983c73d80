"""Kubeflow Trainer: the controller from its vendored chart, a ClusterTrainingRuntime per pool, distributed training
workloads as TrainJobs through the team's queue, all validated against the vendored CRDs."""
from __future__ import annotations

import copy

import pytest

from components.training import EFA_ENV, NODE, RELEASE
from infra.config.pins import PINS
from infra.config.training import MAX_RESTARTS
from infra.lib.conventions import MODEL_STORE_PATH, TRAINING_PRIORITY
from infra.lib.gang import LOCAL_QUEUE, QUEUE_LABEL
from policies.rules.efa import EFA_RESOURCE
from tests.conftest import STACKS, synth_of
from tests.schemas import validate
from tests.test_config import error_of_raw, parse_stack, stack_raw

TRAINJOB = "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob"
RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def runtimes(s) -> dict[str, dict]:
    return {r["inputs"]["metadata"]["name"]: r for r in s.of_type(RUNTIME)}


def runtime_pod(runtime: dict) -> dict:
    return runtime["inputs"]["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_runs_the_pinned_trainer_on_the_general_pool_with_a_runtime_per_pool(stack):
    s = synth_of(stack)
    release = s.release(RELEASE)
    assert release["inputs"]["version"] == PINS["kubeflow-trainer"]
    # The scheduling component's JobSet serves it; the chart's own copy would be a second controller.
    assert release["inputs"]["values"]["jobset"]["install"] is False
    assert s.depends_on(release, s.release("jobset"))
    cpu = next(p for p in s.of_type(NODE_POOL) if p["inputs"]["metadata"]["name"] == "cpu")
    assert s.depends_on(release, cpu) and "nodeSelector" not in release["inputs"]["values"]["manager"]
    [manager] = [r for r in s.result.rendered if r["chartRendered"]["release"] == RELEASE and r["type"] == "kubernetes:apps/v1:Deployment"]
    container = manager["inputs"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/kubeflow/trainer/trainer-controller-manager:v{PINS['kubeflow-trainer']}"
    assert container["resources"]["limits"] == {"memory": container["resources"]["requests"]["memory"]}
    # A runtime per pool that trains: the Neuron pool only with Trainium types (staging's trn1, not dev's and prod's Inferentia).
    pools = set(parse_stack(stack_raw(stack)).node_pools.enabled())
    expected = pools - {"neuron"} if stack != "staging" else pools
    assert {runtime_pod(r)["nodeSelector"]["ml-platform.io/pool"] for r in runtimes(s).values()} == expected
    for runtime in runtimes(s).values():
        validate(runtime["inputs"])
        assert s.depends_on(runtime, release)
        assert runtime_pod(runtime)["priorityClassName"] == TRAINING_PRIORITY
        # One node failing restarts them all from the last checkpoint, never that pod alone.
        jobset = runtime["inputs"]["spec"]["template"]["spec"]
        assert jobset["failurePolicy"] == {"maxRestarts": MAX_RESTARTS} and jobset["replicatedJobs"][0]["template"]["spec"]["backoffLimit"] == 0


def test_efa_pools_runtime_carries_libfabric_settings_and_others_do_not(staging):
    by_name = runtimes(staging)
    neuron, nvidia = runtime_pod(by_name["torch-neuron"]), runtime_pod(by_name["torch-nvidia"])
    assert {e["name"]: e["value"] for e in neuron["containers"][0]["env"]} == EFA_ENV
    assert neuron["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert "env" not in nvidia["containers"][0]


def test_staging_runs_its_two_worker_gpu_training_as_a_trainjob_through_the_team_queue(staging):
    [trainjob] = staging.of_type(TRAINJOB)
    manifest = trainjob["inputs"]
    validate(manifest)
    spec, meta = manifest["spec"], manifest["metadata"]
    assert (meta["name"], meta["namespace"]) == ("sentiment-ddp-1", "nlp")
    assert meta["labels"][QUEUE_LABEL] == LOCAL_QUEUE and spec["suspend"] is True
    assert meta["annotations"]["pulumi.com/skipAwait"] == "true"
    assert spec["runtimeRef"]["name"] == "torch-nvidia"
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 1)
    assert trainer["resourcesPerNode"]["limits"] == {"memory": "16384Mi", "nvidia.com/gpu": "1"}
    assert EFA_RESOURCE not in trainer["resourcesPerNode"]["requests"]
    env = {e["name"]: e["value"] for e in trainer["env"]}
    # torchrun's rendezvous comes from the Trainer (PET_*), not from the program.
    assert not any(k.startswith("PET_") for k in env)
    [patch] = spec["runtimePatches"]
    [job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert job["name"] == NODE and pod["serviceAccountName"] == "sentiment-ddp"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    # Checkpoints to the team's storage, and the model it publishes to the team's store (on S3 in staging: through
    # the publishing claim, with the S3 protocol).
    assert {env["CHECKPOINT_DIR"], env["DATA_DIR"], MODEL_STORE_PATH} <= mounts and env["MODEL_STORE_BACKEND"] == "s3"
    assert {"models": "model-store-publish", "checkpoints": "sentiment-ddp-checkpoints"}.items() <= {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}.items()
    queue = next(r for r in staging.resources if r["type"].endswith(":LocalQueue") and r["inputs"]["metadata"]["namespace"] == "nlp")
    assert staging.depends_on(trainjob, queue) and staging.depends_on(trainjob, runtimes(staging)["torch-nvidia"])
    claim = next(r for r in staging.of_type("kubernetes:core/v1:PersistentVolumeClaim") if r["inputs"]["metadata"]["name"] == "sentiment-ddp-checkpoints")
    assert staging.depends_on(trainjob, claim)
    assert not staging.of_type("kubernetes:jobset.x-k8s.io/v1alpha2:JobSet")


def test_trainer_metrics_are_scraped_and_charted(prod):
    monitor = next(r for r in prod.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor") if r["inputs"]["metadata"]["name"] == "kubeflow-trainer")
    validate(monitor["inputs"])
    [rendered_service] = [r for r in prod.result.rendered if r["chartRendered"]["release"] == RELEASE and r["type"] == "kubernetes:core/v1:Service"]
    labels = rendered_service["inputs"]["metadata"]["labels"]
    assert monitor["inputs"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["inputs"]["spec"]["endpoints"][0]["port"] in {p["name"] for p in rendered_service["inputs"]["spec"]["ports"]}
    board = next(r for r in prod.of_type("kubernetes:core/v1:ConfigMap") if r["inputs"]["metadata"]["name"] == "dashboard-ml-training")
    assert "trainjob_controller" in board["inputs"]["data"]["ml-training.json"]


def test_one_switch_turns_training_off():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["training"] = {"enabled": False}
    cfg = parse_stack(raw)
    assert not cfg.training.enabled
    from components.scheduling import kueue_manager_config

    assert "trainer.kubeflow.org/trainjob" not in kueue_manager_config(cfg, ["nlp"])


def _staging(mutate) -> str:
    raw = copy.deepcopy(stack_raw("staging"))
    mutate(raw)
    return error_of_raw(raw)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda r: r.setdefault("training", {}).update(trainer={"runtimes": [{"name": "torch-gpu", "pool": "nvidia", "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"}, {"name": "trn", "pool": "neuron", "image": "x/y:1", "efaDevicesPerNode": 8}]}) or r["nodePools"].pop("neuron"),
            "training.trainer.runtimes[1].pool 'neuron' has no enabled node pool (enabled: ['cpu', 'nvidia'])",
        ),
        (
            lambda r: r.setdefault("training", {}).update(trainer={"runtimes": [{"name": "torch-cpu", "pool": "cpu", "image": "x/y:1"}]}),
            "workloads[2] (sentiment-ddp) runs 2 workers on nvidia but training.trainer.runtimes has no runtime for that pool",
        ),
        (
            lambda r: r.setdefault("training", {}).update(trainer={"runtimes": [{"name": "trn", "pool": "neuron", "image": "x/y:1"}, {"name": "gpu", "pool": "nvidia", "image": "x/y:1"}]}),
            "training.trainer.runtimes[0].efaDevicesPerNode is 0 but nodePools.neuron has efa on",
        ),
        (
            lambda r: r["nodePools"]["neuron"].update(instanceTypes=["inf2.xlarge"], efa=False) or r.setdefault("training", {}).update(trainer={"runtimes": [{"name": "gpu", "pool": "nvidia", "image": "x/y:1"}, {"name": "inf", "pool": "neuron", "image": "x/y:1"}]}),
            "training.trainer.runtimes[1].pool neuron has no Trainium instance types",
        ),
        (lambda r: r.update(training={"enabled": False}), "workloads[2] (sentiment-ddp) runs 2 workers, which run as a TrainJob: training.enabled must be true"),
        (lambda r: r["workloads"][2].update(maxRestarts=5), "workloads[2].maxRestarts 5: a distributed run restarts as its ClusterTrainingRuntime says (3)"),
    ],
)
def test_bad_training_config_is_refused_naming_the_key(mutate, expected):
    assert expected in _staging(mutate)


def test_app_teams_read_the_runtimes_from_the_stack_outputs(staging):
    training = staging.result.outputs["training"]
    assert training["runtimes"] == {runtime_pod(r)["nodeSelector"]["ml-platform.io/pool"]: name for name, r in runtimes(staging).items()}
    assert training["trainJobApiVersion"] == staging.of_type(TRAINJOB)[0]["inputs"]["apiVersion"]
