"""EFS, its CSI driver and the ML storage classes as synthesized."""
from __future__ import annotations

import pytest

from tests.conftest import synth_of

EFS = "aws:efs/fileSystem:FileSystem"


def test_efs_encrypted_with_its_own_rotating_key(stack):
    fs = stack.one(EFS)["inputs"]
    key = stack.one("aws:kms/key:Key", "storage-efs")
    assert fs["encrypted"] is True and fs["kmsKeyId"] == key["outputs"]["arn"]
    assert key["inputs"]["enableKeyRotation"] is True
    assert {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"} in fs["lifecyclePolicies"]


def test_mount_target_in_every_private_subnet_behind_an_nfs_only_group(stack):
    targets = stack.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t["inputs"]["subnetId"] for t in targets) == sorted(stack.result.outputs["network"]["privateSubnetIds"])
    sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "storage-efs")
    assert all(t["inputs"]["securityGroups"] == [sg["outputs"]["id"]] for t in targets)
    [rule] = sg["inputs"]["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (2049, 2049, "tcp")
    assert rule["securityGroups"] == [stack.result.outputs["cluster"]["securityGroupId"]]
    assert not rule.get("cidrBlocks") and sg["inputs"]["egress"] == []


@pytest.mark.parametrize("stack_name, backups, protected, reclaim", [("dev", "DISABLED", False, "Delete"), ("staging", "ENABLED", False, "Retain"), ("prod", "ENABLED", True, "Retain")])
def test_backups_protection_and_reclaim_per_environment(stack_name, backups, protected, reclaim):
    synth = synth_of(stack_name)
    fs = synth.one(EFS)
    assert synth.one("aws:efs/backupPolicy:BackupPolicy")["inputs"]["backupPolicy"]["status"] == backups
    assert (fs["urn"] in synth.result.protected) is protected
    assert synth.result.manifests["storageclass--cluster--efs-shared.yaml"]["reclaimPolicy"] == reclaim


def test_storage_classes_provision_access_points_on_the_file_system(stack):
    fs_id = stack.one(EFS)["outputs"]["id"]
    driver = next(a for a in stack.of_type("aws:eks/addon:Addon") if a["inputs"]["addonName"] == "aws-efs-csi-driver")
    for name, base in (("efs-shared", "/shared"),):
        sc = stack.result.manifests[f"storageclass--cluster--{name}.yaml"]
        assert sc["provisioner"] == "efs.csi.aws.com" and sc["mountOptions"] == ["tls"]
        assert sc["parameters"]["provisioningMode"] == "efs-ap" and sc["parameters"]["fileSystemId"] == fs_id
        assert sc["parameters"]["basePath"] == base
        assert "storageclass.kubernetes.io/is-default-class" not in sc["metadata"].get("annotations", {})
        record = next(r for r in stack.of_type("kubernetes:storage.k8s.io/v1:StorageClass") if r["inputs"]["metadata"]["name"] == name)
        assert stack.depends_on(record, driver)
    identity = driver["inputs"]["podIdentityAssociations"][0]
    assert identity["serviceAccount"] == "efs-csi-controller-sa"
    assert identity["roleArn"] == stack.one("aws:iam/role:Role", "storage-efs-csi")["outputs"]["arn"]
    assert stack.result.outputs["storage"]["defaultClass"] == "gp3"
    assert set(stack.result.outputs["storage"]["classes"]) == {"efs-shared"}


MOUNT_ACTIONS = ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")


def test_file_system_policy_admits_tls_mounts_through_mount_targets_only(stack):
    from tests.iam_eval import decide

    fs = stack.one(EFS)
    policy = stack.one("aws:efs/fileSystemPolicy:FileSystemPolicy")["inputs"]["policy"]
    arn = fs["outputs"]["arn"]
    tls_mount = {"aws:SecureTransport": "true", "elasticfilesystem:AccessedViaMountTarget": "true"}
    plain_nfs = {"aws:SecureTransport": "false", "elasticfilesystem:AccessedViaMountTarget": "true"}
    for action in MOUNT_ACTIONS:
        assert decide(policy, action, arn, tls_mount) == "Allow", action
        assert decide(policy, action, arn, plain_nfs) == "ExplicitDeny", action
        assert decide(policy, action, arn, {"aws:SecureTransport": "true"}) == "ImplicitDeny", "only through a mount target"
    # Access points enforce each volume's POSIX identity; nobody gets root on the file system.
    assert decide(policy, "elasticfilesystem:ClientRootAccess", arn, tls_mount) == "ImplicitDeny"


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_each_team_has_a_model_store_only_its_namespace_can_mount(stack_name):
    """The EFS stores (staging's is on S3: tests/test_model_store_s3.py)."""
    synth = synth_of(stack_name)
    ap = synth.one("aws:efs/accessPoint:AccessPoint", "model-stores-nlp")["inputs"]
    assert ap["fileSystemId"] == synth.one(EFS)["outputs"]["id"]
    assert ap["posixUser"] == {"uid": 20001, "gid": 20001} and ap["rootDirectory"]["path"] == "/model-stores/nlp"
    assert ap["rootDirectory"]["creationInfo"] == {"ownerUid": 20001, "ownerGid": 20001, "permissions": "0750"}
    assert ap["tags"]["cost-center"]
    m = synth.result.manifests
    volume = m["persistentvolume--cluster--model-store-nlp.yaml"]["spec"]
    ap_record = synth.one("aws:efs/accessPoint:AccessPoint", "model-stores-nlp")
    assert volume["csi"] == {"driver": "efs.csi.aws.com", "volumeHandle": f"{ap['fileSystemId']}::{ap_record['outputs']['id']}"}
    assert volume["claimRef"] == {"namespace": "nlp", "name": "model-store"}, "pre-bound: no other namespace can claim it"
    assert volume["persistentVolumeReclaimPolicy"] == "Retain" and volume["accessModes"] == ["ReadWriteMany"] and volume["mountOptions"] == ["tls"]
    claim = m["persistentvolumeclaim--nlp--model-store.yaml"]["spec"]
    assert claim["volumeName"] == "model-store-nlp" and claim["storageClassName"] == ""
    assert synth.result.outputs["teams"]["nlp"]["modelStore"] == {"claim": "model-store", "mountPath": "/models", "backend": "efs"}
