"""Awaits the engine can meet: fixtures that must fail, and their fixed versions."""
from __future__ import annotations

import copy

from infra.offline.policy_check import check
from policies.rules import awaits

JOB, POOL, PVC, SC = "kubernetes:batch/v1:Job", awaits.NODE_POOL, awaits.PVC, awaits.STORAGE_CLASS


def record(type_: str, name: str, props: dict, deps: tuple[str, ...] = ()) -> dict:
    return {
        "urn": f"urn:{name}", "type": type_, "name": name, "parent": None, "custom": True, "provider": None,
        "dependencies": [f"urn:{d}" for d in deps], "inputs": props, "outputs": props,
    }


def messages(records: list[dict]) -> list[str]:
    return [v["message"] for v in check(records, "prod", rules=[awaits.await_prerequisites_in_graph])["violations"]]


NVIDIA = {"metadata": {"name": "nvidia"}, "spec": {"template": {"metadata": {"labels": {"ml-platform.io/pool": "nvidia", "ml-platform.io/accelerator": "nvidia"}}}}}


def gpu_job(annotations: dict | None = None, deps: tuple[str, ...] = ()) -> dict:
    props = {"metadata": {"name": "warmup", "annotations": annotations or {}},
             "spec": {"template": {"spec": {"nodeSelector": {"ml-platform.io/accelerator": "nvidia"}}}}}
    return record(JOB, "warmup", props, deps)


def test_a_job_waiting_on_a_pool_created_after_it_fails():
    [message] = messages([gpu_job(), record(POOL, "pool", NVIDIA, ("warmup",))])
    assert "NodePool nvidia is not created before it" in message


def test_the_fixed_job_passes_after_its_pool_or_unawaited():
    assert messages([record(POOL, "pool", NVIDIA), gpu_job(deps=("pool",))]) == []
    assert messages([gpu_job({"pulumi.com/skipAwait": "true"}), record(POOL, "pool", NVIDIA)]) == []


def claim(cls: str, deps: tuple[str, ...] = ()) -> dict:
    return record(PVC, "data", {"metadata": {"name": "data"}, "spec": {"storageClassName": cls}}, deps)


def test_a_claim_on_a_class_without_a_provisioner_fails():
    local = record(SC, "local", {"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"})
    [message] = messages([local, claim("local", ("local",))])
    assert "no provisioner and Immediate binding" in message
    # Fixed: a class whose driver exists before the claim.
    addon = record("aws:eks/addon:Addon", "efs-addon", {"addonName": "aws-efs-csi-driver"})
    efs = record(SC, "efs", {"metadata": {"name": "efs"}, "provisioner": "efs.csi.aws.com", "volumeBindingMode": "Immediate"})
    assert messages([addon, efs, claim("efs", ("efs", "efs-addon"))]) == []
    [message] = messages([addon, efs, claim("efs", ("efs",))])
    assert "aws-efs-csi-driver add-on" in message


def test_a_claim_created_before_its_class_or_on_a_missing_one_fails():
    gp3 = record(SC, "gp3", {"metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer"})
    assert messages([gp3, claim("gp3", ("gp3",))]) == []
    assert "created before its StorageClass 'gp3'" in messages([gp3, claim("gp3")])[0]
    assert "which the stack does not create" in messages([claim("nowhere")])[0]


def test_a_dependency_on_a_component_covers_its_children():
    pool = record(POOL, "pool", NVIDIA)
    pool["parent"] = "urn:karpenter"
    component = {**record("ml-platform:karpenter:Karpenter", "karpenter", {}), "custom": False}
    assert messages([component, pool, gpu_job(deps=("karpenter",))]) == []
    broken = copy.deepcopy([component, pool, gpu_job()])
    assert len(messages(broken)) == 1
