"""A team model store on S3 (staging's nlp team): its bucket, the Mountpoint CSI driver, the static volumes and the
Pod Identity of every pod that mounts them; the settings' errors."""
from __future__ import annotations

import datetime
import json
import re

import pytest

from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PUBLISH_CLAIM
from tests.conftest import ROOT
from tests.iam_eval import decide
from tests.test_config import error_of, parse_stack, stack_raw
from infra import cost
from infra.lib import timing

BUCKET = "ml-platform-staging-models-nlp-111122223333"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
POD_OWNERS = {
    "kubernetes:apps/v1:Deployment": lambda i: i["spec"]["template"]["spec"],
    "kubernetes:batch/v1:Job": lambda i: i["spec"]["template"]["spec"],
    "kubernetes:batch/v1:CronJob": lambda i: i["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    # KServe makes the predictor's pod from this spec (staging serves on the KServe path).
    "kubernetes:serving.kserve.io/v1beta1:InferenceService": lambda i: i["spec"]["predictor"],
    "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob": lambda i: i["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"],
}


def test_the_bucket_is_private_encrypted_versioned_and_tls_only(staging):
    bucket = staging.one("aws:s3/bucket:Bucket", "model-stores-nlp")
    assert bucket["inputs"]["bucket"] == BUCKET and bucket["inputs"].get("forceDestroy") is False
    key = staging.one("aws:kms/key:Key", "model-stores-nlp")
    assert key["inputs"]["enableKeyRotation"] is True
    sse = staging.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "model-stores-nlp")["inputs"]["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key["outputs"]["arn"]} and sse["bucketKeyEnabled"] is True
    block = staging.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "model-stores-nlp")["inputs"]
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert staging.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "model-stores-nlp")["inputs"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert staging.one("aws:s3/bucketVersioning:BucketVersioning", "model-stores-nlp")["inputs"]["versioningConfiguration"]["status"] == "Enabled"
    [rule] = staging.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "model-stores-nlp")["inputs"]["rules"]
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30} and "expiration" not in rule, "current versions never expire"
    policy = staging.one("aws:s3/bucketPolicy:BucketPolicy", "model-stores-nlp")["inputs"]["policy"]
    assert decide(policy, "s3:GetObject", f"{BUCKET_ARN}/m/1/manifest.json", {"aws:SecureTransport": "false"}) == "ExplicitDeny"
    assert decide(policy, "s3:GetObject", f"{BUCKET_ARN}/m/1/manifest.json", {"aws:SecureTransport": "true"}) == "ImplicitDeny"
    # Protected with the file system (storage.protect, on in prod); staging's is not, and the pack says so.
    assert not any(u == bucket["urn"] for u in staging.result.protected)
    assert any(v["policy"] == "stateful-storage-protected" and v["urn"] == bucket["urn"] for v in staging.result.policy["violations"])
    # The cost ceiling counts the budgeted size, driven by the store's own setting, as the graph and the plan agree.
    assert staging.result.cost["fixed"][f"s3-{BUCKET}"]["detail"] == "500 GiB of S3 Standard (the budgeted size)"
    item = next(i for i in cost.checked_ceiling(parse_stack(stack_raw("staging")), datetime.date(2026, 12, 5)).items if i.name == f"s3-{BUCKET}")
    assert item.drivers == {"storage.modelStores.nlp.s3.budgetedGib": item.hourly_usd}


def test_the_mountpoint_driver_is_the_pinned_add_on_without_a_role(staging):
    addon = staging.one("aws:eks/addon:Addon", "ml-platform-staging-aws-mountpoint-s3-csi-driver")
    assert addon["inputs"]["addonName"] == "aws-mountpoint-s3-csi-driver" and addon["inputs"]["addonVersion"] == "v2.7.0-eksbuild.1"
    # Every volume authenticates as the mounting pod: the driver itself has no AWS identity.
    assert not addon["inputs"].get("podIdentityAssociations") and not addon["inputs"].get("serviceAccountRoleArn")
    agent = staging.one("aws:eks/addon:Addon", "ml-platform-staging-eks-pod-identity-agent")
    cpu_pool = next(r for r in staging.of_type("kubernetes:karpenter.sh/v1:NodePool") if r["inputs"]["metadata"]["name"] == "cpu")
    assert staging.depends_transitively(addon, agent) and staging.depends_on(addon, cpu_pool), "its controller runs on the cpu pool"


def test_the_volumes_are_static_pre_bound_and_authenticate_as_the_pod(staging):
    m = staging.result.manifests
    reader = m["persistentvolume--cluster--model-store-nlp.yaml"]["spec"]
    publisher = m["persistentvolume--cluster--model-store-publish-nlp.yaml"]["spec"]
    for volume, claim in ((reader, MODEL_STORE_CLAIM), (publisher, MODEL_STORE_PUBLISH_CLAIM)):
        assert volume["csi"]["driver"] == "s3.csi.aws.com" and volume["storageClassName"] == "" and volume["persistentVolumeReclaimPolicy"] == "Retain"
        assert volume["csi"]["volumeAttributes"]["bucketName"] == BUCKET and volume["csi"]["volumeAttributes"]["authenticationSource"] == "pod"
        assert volume["claimRef"] == {"namespace": "nlp", "name": claim}, "pre-bound: no other namespace can claim it"
        assert m[f"persistentvolumeclaim--nlp--{claim}.yaml"]["spec"]["volumeName"] == volume["csi"]["volumeHandle"]
        assert "allow-delete" not in volume["mountOptions"], "no mount deletes a model"
    assert reader["accessModes"] == ["ReadOnlyMany"] and "read-only" in reader["mountOptions"] and "metadata-ttl 60" in reader["mountOptions"]
    assert {k: reader["csi"]["volumeAttributes"][k] for k in ("cache", "cacheEmptyDirSizeLimit")} == {"cache": "emptyDir", "cacheEmptyDirSizeLimit": "20Gi"}
    assert publisher["accessModes"] == ["ReadWriteMany"] and "allow-overwrite" in publisher["mountOptions"] and "cache" not in publisher["csi"]["volumeAttributes"]
    # The pods run as 10001: they may use Mountpoint's files (allow-other) as their owner.
    assert {"allow-other", "uid 10001", "gid 10001"} <= set(reader["mountOptions"]) & set(publisher["mountOptions"])
    addon = staging.one("aws:eks/addon:Addon", "ml-platform-staging-aws-mountpoint-s3-csi-driver")
    assert staging.depends_on(staging.one("kubernetes:core/v1:PersistentVolume", "model-stores-nlp"), addon)


def _policy_of_role(staging, role_arn: str) -> str:
    role = next(r for r in staging.of_type("aws:iam/role:Role") if r["outputs"]["arn"] == role_arn)
    attachment = next(r for r in staging.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r["inputs"]["role"] == role["outputs"]["name"])
    return next(r for r in staging.of_type("aws:iam/policy:Policy") if r["outputs"]["arn"] == attachment["inputs"]["policyArn"])["inputs"]["policy"]


def test_every_pod_that_mounts_the_store_has_the_pod_identity_its_claim_needs(staging):
    associations = {(a["inputs"]["namespace"], a["inputs"]["serviceAccount"]): a for a in staging.of_type(ASSOCIATION)}
    reader_claim = staging.one("kubernetes:core/v1:PersistentVolumeClaim", "model-stores-nlp-claim")
    key_arn = staging.one("aws:kms/key:Key", "model-stores-nlp")["outputs"]["arn"]
    via_s3 = {"kms:ViaService": "s3.us-west-2.amazonaws.com"}
    seen = set()
    for type_, spec_of in POD_OWNERS.items():
        for r in staging.of_type(type_):
            pod = spec_of(r["inputs"])
            claims = {(v.get("persistentVolumeClaim") or {}).get("claimName") for v in pod.get("volumes") or []} & {MODEL_STORE_CLAIM, MODEL_STORE_PUBLISH_CLAIM}
            if r["inputs"]["metadata"].get("namespace") != "nlp" or not claims:
                continue
            account = pod["serviceAccountName"]
            association = associations[("nlp", account)]
            policy = _policy_of_role(staging, association["inputs"]["roleArn"])
            publishes = MODEL_STORE_PUBLISH_CLAIM in claims
            seen.add((account, publishes))
            assert decide(policy, "s3:GetObject", f"{BUCKET_ARN}/sentiment-base/1/manifest.json", {}) == "Allow"
            assert decide(policy, "s3:ListBucket", BUCKET_ARN, {}) == "Allow"
            assert decide(policy, "kms:Decrypt", key_arn, via_s3) == "Allow" and decide(policy, "kms:Decrypt", key_arn, {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}) != "Allow"
            assert decide(policy, "s3:PutObject", f"{BUCKET_ARN}/sentiment-base/1/manifest.json", {}) == ("Allow" if publishes else "ImplicitDeny"), account
            assert decide(policy, "s3:DeleteObject", f"{BUCKET_ARN}/sentiment-base/1/manifest.json", {}) == "ImplicitDeny"
            assert decide(policy, "s3:GetObject", "arn:aws:s3:::ml-platform-staging-pipelines-111122223333/nlp/x", {}) == "ImplicitDeny", "its own bucket only"
            # A mount never races its credentials: the pod waits for the claim, which waits for the association.
            assert staging.depends_transitively(r, association) and staging.depends_transitively(r, reader_claim)
            container = pod["containers"][0]
            if publishes and "modelstore" in (container.get("command") or []):
                assert {"name": "MODEL_STORE_BACKEND", "value": "s3"} in container["env"], f"{account} publishes with the S3 protocol"
    assert seen == {("sentiment", False), ("assistant", False), ("nlp-workloads", True), ("sentiment-ddp", True)}


def test_a_pipeline_run_publishes_into_its_teams_s3_store_through_the_runners_one_role(staging, prod):
    """The runner's Pod Identity names one role: on an S3 store it publishes there too (docs/app-teams/model-store.md),
    and still reaches only its own prefix of the artifacts; a runner of an EFS team has no store statement."""
    from components.pipelines import RUNNER_SERVICE_ACCOUNT

    [association] = [a for a in staging.of_type(ASSOCIATION) if (a["inputs"]["namespace"], a["inputs"]["serviceAccount"]) == ("nlp", RUNNER_SERVICE_ACCOUNT)]
    policy = _policy_of_role(staging, association["inputs"]["roleArn"])
    key_arn = staging.one("aws:kms/key:Key", "model-stores-nlp")["outputs"]["arn"]
    version = f"{BUCKET_ARN}/sentiment/2/model.safetensors"
    assert decide(policy, "s3:PutObject", version, {}) == "Allow" and decide(policy, "s3:GetObject", version, {}) == "Allow"
    assert decide(policy, "s3:DeleteObject", version, {}) == "ImplicitDeny"
    assert decide(policy, "kms:GenerateDataKey", key_arn, {"kms:ViaService": "s3.us-west-2.amazonaws.com"}) == "Allow"
    artifacts = "arn:aws:s3:::ml-platform-staging-pipelines-111122223333"
    assert decide(policy, "s3:PutObject", f"{artifacts}/nlp/runs/x", {}) == "Allow"
    assert decide(policy, "s3:PutObject", f"{artifacts}/other/runs/x", {}) == "ImplicitDeny"
    [efs_runner] = [r for r in prod.of_type("aws:iam/policy:Policy") if r["name"] == "pipelines-nlp-runner"]
    assert "PublishModels" not in efs_runner["inputs"]["policy"]


def test_the_llm_download_writes_the_marker_last_without_renames(staging):
    job = next(r for r in staging.of_type("kubernetes:batch/v1:Job") if r["inputs"]["metadata"]["name"] == "download-qwen2-5-1-5b-instruct-1")
    script = job["inputs"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "local_dir=local" in script and script.rstrip().splitlines()[-1].startswith("(target / sys.argv[4]).write_text(")


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["storage"]["modelStores"]["nlp"].pop("s3"),
         "ml-platform:storage.modelStores.nlp.s3.bucketName: an S3 store needs its bucket's name"),
        (lambda r: r["storage"]["modelStores"]["nlp"]["s3"].update(bucketName="Models_NLP"),
         "ml-platform:storage.modelStores.nlp.s3.bucketName: \"Models_NLP\" is not allowed: an S3 bucket name is 3 to 63 lowercase letters"),
        (lambda r: r["storage"]["modelStores"]["nlp"]["s3"].update(bucketName="models.nlp.example"),
         "use a bucket name without dots"),
        (lambda r: r["storage"]["modelStores"]["nlp"].update(uid=20001),
         "ml-platform:storage.modelStores.nlp.uid: only an EFS store has a POSIX identity"),
        (lambda r: r["storage"]["modelStores"]["nlp"].update(backend="efs", uid=20001),
         "ml-platform:storage.modelStores.nlp.s3: Mountpoint settings on an EFS store; set backend: s3"),
        (lambda r: r["storage"]["modelStores"]["nlp"].update(backend="efs", s3=None),
         "ml-platform:storage.modelStores.nlp.uid: an EFS store needs the POSIX uid"),
        (lambda r: r["storage"]["modelStores"]["nlp"].update(backend="gcs"),
         "ml-platform:storage.modelStores.nlp.backend: \"gcs\" is not allowed"),
        (lambda r: r["storage"]["modelStores"]["nlp"]["s3"].update(bucketName=r["kubeflow"]["pipelines"]["artifacts"]["bucketName"]),
         "ml-platform:storage.modelStores.nlp.s3.bucketName 'ml-platform-staging-pipelines-111122223333' is already the bucket of kubeflow.pipelines.artifacts"),
    ],
)
def test_bad_store_settings_are_one_clear_error(mutate, expected):
    assert expected in error_of(mutate, "staging")


def test_the_efs_path_is_unchanged_where_the_store_is_on_efs(dev):
    """dev's store is on EFS: its publishers keep the one claim and the rename protocol, and no S3 object exists."""
    assert not [r for r in dev.of_type("aws:eks/addon:Addon") if "mountpoint" in r["name"]]
    jobs = [r for r in dev.of_type("kubernetes:batch/v1:Job") if r["inputs"]["metadata"]["name"].startswith(("bootstrap-", "compile-"))]
    assert jobs
    for job in jobs:
        pod = job["inputs"]["spec"]["template"]["spec"]
        assert {"name": "models", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": False}} in pod["volumes"]
        assert pod["containers"][0]["env"] == [{"name": "HF_HOME", "value": "/tmp/hf"}]
    assert "model-store-publish" not in json.dumps(dev.result.manifests)


def test_the_cold_start_reads_staging_weights_from_s3(staging, dev):
    nvidia = staging.result.cold_start["pools"]["nvidia"]
    assert nvidia["weightsFrom"].startswith("S3 through Mountpoint, 1192 MiB/s")
    assert nvidia["weightsSeconds"] == timing.MOUNTPOINT_POD + round(nvidia["weightsGib"] * 1024 / 1192)
    assert dev.result.cold_start["pools"]["neuron"]["weightsFrom"].startswith("EFS ")


def test_no_service_account_has_two_pod_identity_associations(stack):
    """EKS keeps one association per service account: the store's must not collide with another component's."""
    keys = [(a["inputs"]["namespace"], a["inputs"]["serviceAccount"]) for a in stack.of_type(ASSOCIATION)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_volume_attributes_and_mount_options_exist_upstream_at_the_pin(staging):
    """Against the vendored sources: the driver release the pinned add-on build carries, and the mount-s3 release that
    driver ships (its Dockerfile): an unknown attribute is ignored by the driver, an unknown flag fails every mount."""
    upstream = ROOT / "schemas" / "upstream"
    driver = parse_stack(stack_raw("staging")).storage.mountpoint_csi_driver_version.split("-eksbuild.")[0]
    context = (upstream / "mountpoint-s3-csi-driver" / driver / "pkg/driver/node/volumecontext/volume_context.go").read_text()
    known_values = set(re.findall(r'^\s*\w+\s*=\s*"([^"]+)"', context, re.M))
    [mountpoint] = re.findall(r"^ARG MOUNTPOINT_VERSION=(\S+)$", (upstream / "mountpoint-s3-csi-driver" / driver / "Dockerfile").read_text(), re.M)
    cli = (upstream / "mountpoint-s3" / mountpoint / "mountpoint-s3/src/cli.rs").read_text()
    flags = {name.replace("_", "-") for name in re.findall(r"^\s*pub (\w+):", cli, re.M)}
    assert {"allow-delete", "allow-overwrite", "read-only", "metadata-ttl"} <= flags and "allow-rename" not in flags
    for name in ("model-store-nlp", "model-store-publish-nlp"):
        volume = staging.result.manifests[f"persistentvolume--cluster--{name}.yaml"]["spec"]
        attributes = volume["csi"]["volumeAttributes"]
        assert set(attributes) <= known_values and attributes.get("cache", "emptyDir") in known_values, name
        assert {option.split(" ")[0] for option in volume["mountOptions"]} <= flags, name
