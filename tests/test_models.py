"""The model lifecycle: bootstrap and compile jobs, serving that waits for its model, awaits sized to reality,
promotion by config, and the config errors that keep versions honest."""
from __future__ import annotations

import copy

import pytest
import yaml

from infra.lib import timing
from infra.synth import synthesize
from policies.rules.scheduling import matching_pools
from tests.conftest import ROOT, lean, synth_of
from tests.test_config import error_of, stack_raw

HUB = {"hubId": "distilbert/distilbert-base-uncased-finetuned-sst-2-english", "revision": "714eb0fa89d2f80546fda750413ed43d93601a13"}


def node_pools(synth) -> list[dict]:
    return [m for m in synth.result.manifests.values() if m["kind"] == "NodePool"]


def test_dev_bootstraps_then_compiles_then_serves_on_the_right_pools():
    dev = synth_of("dev")
    m = dev.result.manifests
    bootstrap, compile_ = m["job--nlp--bootstrap-sentiment-base-1.yaml"], m["job--nlp--compile-sentiment-base-1-inf2.yaml"]
    b_spec, c_spec = bootstrap["spec"]["template"]["spec"], compile_["spec"]["template"]["spec"]
    assert b_spec["containers"][0]["command"] == [
        "python", "-m", "modelstore", "bootstrap", "--store", "/models", "--model", "sentiment-base", "--version", "1",
        "--hub-id", HUB["hubId"], "--revision", HUB["revision"],
    ]
    assert matching_pools(b_spec, node_pools(dev)) == ["cpu"]
    assert c_spec["nodeSelector"] == {"ml-platform.io/pool": "neuron", "karpenter.k8s.aws/instance-family": "inf2"}
    assert c_spec["containers"][0]["command"][3:] == ["compile", "--store", "/models", "--model", "sentiment-base", "--version", "1", "--target", "inf2"]
    assert matching_pools(c_spec, node_pools(dev)) == ["neuron"]
    for spec in (b_spec, c_spec):
        assert {"name": "models", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": False}} in spec["volumes"]
    job = lambda n: dev.one("kubernetes:batch/v1:Job", n)  # noqa: E731
    serving_deployment = dev.one("kubernetes:apps/v1:Deployment", "nlp-sentiment-stable")
    assert dev.depends_on(job("nlp-compile-sentiment-base-1-inf2"), job("nlp-bootstrap-sentiment-base-1"))
    assert dev.depends_on(serving_deployment, job("nlp-compile-sentiment-base-1-inf2"))
    claim = dev.one("kubernetes:core/v1:PersistentVolumeClaim", "model-stores-nlp-claim")
    assert all(dev.depends_on(r, claim) for r in (serving_deployment, job("nlp-bootstrap-sentiment-base-1"), job("nlp-sentiment-finetune-job")))
    serving = m["deployment--nlp--sentiment.yaml"]["spec"]["template"]["spec"]
    assert serving["nodeSelector"]["karpenter.k8s.aws/instance-family"] == "inf2"
    assert {"name": "NEURON_TARGET", "value": "inf2"} in serving["containers"][0]["env"]
    assert serving["initContainers"][0]["command"][10:12] == ["--target", "inf2"]


def test_training_writes_the_store_serving_reads():
    m = synth_of("dev").result.manifests
    training = m["job--nlp--sentiment-finetune-1.yaml"]["spec"]["template"]["spec"]
    serving = m["deployment--nlp--sentiment.yaml"]["spec"]["template"]["spec"]
    claim = lambda spec: next(v["persistentVolumeClaim"] for v in spec["volumes"] if v["name"] == "models")  # noqa: E731
    assert claim(training) == {"claimName": "model-store", "readOnly": False} and claim(serving) == {"claimName": "model-store", "readOnly": True}


def test_the_model_lifecycle_and_serving_are_not_awaited():
    """A download, a compile, a training run or a first rollout on a new node outlasts a deploy: Pulumi creates them and
    moves on; the Jobs' deadlines are sized to node launch, image pull and the work."""
    m = synth_of("dev").result.manifests
    for name in ("deployment--nlp--sentiment.yaml", "service--nlp--sentiment.yaml", "job--nlp--compile-sentiment-base-1-inf2.yaml",
                 "job--nlp--bootstrap-sentiment-base-1.yaml", "job--nlp--sentiment-finetune-1.yaml"):
        assert m[name]["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true", name
    assert m["job--nlp--compile-sentiment-base-1-inf2.yaml"]["spec"]["activeDeadlineSeconds"] == timing.job_done("neuron", timing.NEURON_COMPILE)
    assert m["job--nlp--bootstrap-sentiment-base-1.yaml"]["spec"]["activeDeadlineSeconds"] == timing.job_done("cpu", timing.MODEL_DOWNLOAD)


def test_lifecycle_jobs_are_restricted_and_keep_their_node():
    m = synth_of("dev").result.manifests
    for name in ("job--nlp--bootstrap-sentiment-base-1.yaml", "job--nlp--compile-sentiment-base-1-inf2.yaml"):
        template = m[name]["spec"]["template"]
        assert template["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true", "sidecar.istio.io/inject": "false"}
        container = template["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "HF_HOME", "value": "/tmp/hf"} in container["env"]


# -- promotion by config: before, canary, promoted ------------------------------------------------
def promotion_stack(tmp_path, serving_update: dict, name: str) -> dict:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    serving = lean(doc["config"])["ml-platform:workloads"][0]
    serving.update(copy.deepcopy(serving_update))
    # Two tracks at their peak hold 5 NeuronCores: room for the compile Jobs beside them.
    doc["config"]["ml-platform:teams"][0]["quota"]["neuronCores"] = 6
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = synthesize("dev", path)
    assert not result.mandatory_violations, result.mandatory_violations
    return result


BEFORE = {"model": {"name": "sentiment-base", "version": "1", "external": HUB}}
# The fine-tuned version, published by the dev stack's training run, goes out as a canary; the cluster rolls it out.
CANARY = {"model": {"name": "sentiment", "version": "ft-1"}, "canary": {"weight": 20, "stable": {"model": BEFORE["model"]}}}
PROMOTED = {**CANARY, "canary": {"weight": 20, "promote": True, "stable": {"model": BEFORE["model"]}}}


def deployments(result) -> dict[str, str]:
    """Deployment name -> the model directory it serves."""
    return {
        m["metadata"]["name"]: next(e["value"] for e in m["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "MODEL_DIR")
        for m in result.manifests.values()
        if m["kind"] == "Deployment" and m["metadata"]["namespace"] == "nlp"
    }


def weights(result) -> list[tuple[str, int]]:
    return [(b["name"], b["weight"]) for b in result.manifests["httproute--nlp--sentiment.yaml"]["spec"]["rules"][0]["backendRefs"]]


def test_promotion_by_config(tmp_path):
    before, canary, promoted = (promotion_stack(tmp_path, u, n) for u, n in ((BEFORE, "before"), (CANARY, "canary"), (PROMOTED, "promoted")))
    assert deployments(before) == {"sentiment": "/models/sentiment-base/1"}
    assert weights(before) == [("sentiment", 100)]

    assert deployments(canary) == {"sentiment": "/models/sentiment-base/1", "sentiment-canary": "/models/sentiment/ft-1"}
    assert weights(canary) == [("sentiment", 80), ("sentiment-canary", 20)]
    # Both versions are compiled for the target; the canary waits for the fine-tuned model the training publishes.
    assert {"job--nlp--compile-sentiment-base-1-inf2.yaml", "job--nlp--compile-sentiment-ft-1-inf2.yaml"} <= set(canary.manifests)
    assert canary.outputs["workloads"]["nlp/sentiment"]["models"] == {"stable": "sentiment-base@1", "canary": "sentiment@ft-1", "canaryWeight": 20}

    assert deployments(promoted) == {"sentiment": "/models/sentiment/ft-1"}
    assert weights(promoted) == [("sentiment", 100)]
    assert "job--nlp--compile-sentiment-base-1-inf2.yaml" not in promoted.manifests, "the old version is gone"
    assert promoted.outputs["workloads"]["nlp/sentiment"]["models"] == {"stable": "sentiment@ft-1", "canaryWeight": 0}


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["workloads"][0].update(model={"name": "sentiment", "version": "ft-2"}),
         "ml-platform:workloads[0].model sentiment@ft-2 is produced by no training workload of team 'nlp' and is not external (hubId and revision); models of the team: ['sentiment@ft-1']"),
        (lambda r: r["workloads"][1].update(output={"name": "sentiment-base", "version": "1"}),
         "model sentiment-base@1 of team 'nlp' already comes from"),
        (lambda r: r["workloads"].append({**copy.deepcopy(r["workloads"][1]), "name": "finetune-again"}),
         "ml-platform:workloads[2] model sentiment@ft-1 of team 'nlp' already comes from workloads[1] (sentiment-finetune), not workloads[2] (finetune-again)"),
        (lambda r: r["workloads"][0]["model"]["external"].update(revision="0" * 40),
         None),
        (lambda r: r["workloads"][0].update(neuronTarget="trn1"),
         "ml-platform:workloads[0].neuronTarget 'trn1' has no compile path (nor nodes to run on): the neuron pool offers ['inf1', 'inf2']"),
        (lambda r: r["workloads"][0].pop("neuronTarget"), "neuronTarget (inf1, inf2, trn1 or trn2) is required for accelerator neuron"),
        (lambda r: r["storage"]["modelStores"].update(vision={"uid": 20002}), "ml-platform:storage.modelStores.vision: 'vision' is not one of the teams: ['nlp']"),
        (lambda r: r["storage"].pop("modelStores"), "team 'nlp' has no model store; add storage.modelStores.nlp"),
        (lambda r: r["workloads"][0]["model"].update(version="V1.0"), "ml-platform:workloads[0].model.version: \"V1.0\" is not allowed"),
        (lambda r: r["workloads"][0]["model"]["external"].update(revision="main"), "ml-platform:workloads[0].model.external.revision: \"main\" is not allowed"),
        (lambda r: r["workloads"][0].update(canary={"weight": 10}), "canary runs the same image and model as the stable version"),
        (lambda r: r["workloads"][1].update(schedule="@daily"), "output is set on a scheduled training"),
    ],
)
def test_bad_model_config_is_one_clear_error(mutate, expected):
    if expected is None:
        # Another revision under the same version is the same mistake, caught where two workloads disagree.
        def two_sources(r):
            mutate(r)
            r["workloads"].append({**copy.deepcopy(stack_raw("dev")["workloads"][0]), "name": "sentiment-b", "path": "/sentiment-b"})
        message = error_of(two_sources, "dev")
        assert "model sentiment-base@1 of team 'nlp' already comes from distilbert/" in message
        return
    assert expected in error_of(mutate, "dev")
