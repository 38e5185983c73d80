"""A team's model store as its pods see it, whatever the backend (storage.modelStores.<team>.backend).

EFS: one claim, `model-store`, mounted read-only by readers and read-write by publishers; a version is published by
writing a hidden directory and renaming it into place. S3: Mountpoint for Amazon S3 cannot rename on a general
purpose bucket, so publishers write through their own claim, `model-store-publish`, each file once under the
version's prefix and the version's `manifest.json` last: the manifest is the completion marker, and readers use a
version only once it exists (examples/sentiment-service/modelstore.py). Readers mount `model-store` read-only with a
local cache. Both claims reach the bucket with the pod's own Pod Identity: readers' roles read, publishers' write.
"""
from __future__ import annotations

import pulumi_kubernetes as k8s

from infra.config import PlatformConfig, S3ModelStore, ServingWorkload, TrainingWorkload
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PATH, MODEL_STORE_PUBLISH_CLAIM, WORKLOAD_UID, team_service_account
from infra.lib.iam import policy_document

core = k8s.core.v1

S3_DRIVER = "s3.csi.aws.com"
# Set on every publishing pod: the protocol modelstore.py follows (efs: rename into place; s3: manifest last).
BACKEND_ENV = "MODEL_STORE_BACKEND"


def backend(cfg: PlatformConfig, team: str) -> str:
    return cfg.storage.model_stores[team].backend


def claim(cfg: PlatformConfig, team: str, publish: bool) -> str:
    return MODEL_STORE_PUBLISH_CLAIM if publish and backend(cfg, team) == "s3" else MODEL_STORE_CLAIM


def volume(cfg: PlatformConfig, team: str, publish: bool) -> tuple[core.VolumeArgs, core.VolumeMountArgs]:
    """The pod's volume and its container mount at /models: read-only for readers, writable for publishers."""
    read_only = not publish
    return (
        core.VolumeArgs(name="models", persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim(cfg, team, publish), read_only=read_only)),
        core.VolumeMountArgs(name="models", mount_path=MODEL_STORE_PATH, read_only=read_only),
    )


def publisher_env(cfg: PlatformConfig, team: str) -> dict[str, str]:
    """What a publishing pod's environment adds: the S3 protocol; nothing on EFS (modelstore.py's default)."""
    return {BACKEND_ENV: "s3"} if backend(cfg, team) == "s3" else {}


def readers(cfg: PlatformConfig, team: str) -> list[str]:
    """Service accounts of the team's pods that read the store: serving workloads with a store model, LLM engines."""
    names = {w.name for w in cfg.workloads if isinstance(w, ServingWorkload) and w.team == team and w.models()}
    names |= {w.name for w in cfg.llm.workloads if w.team == team}
    # One Pod Identity association per service account: one that also publishes gets the publishers' role.
    return sorted(names - set(publishers(cfg, team)))


def publishers(cfg: PlatformConfig, team: str) -> list[str]:
    """Service accounts of the team's pods that publish: the platform's lifecycle Jobs, training runs with an output."""
    names = {w.name for w in cfg.workloads if isinstance(w, TrainingWorkload) and w.team == team and w.output}
    return sorted(names | {team_service_account(team)})


def reader_mount_options(store: S3ModelStore, region: str) -> list[str]:
    """Mountpoint flags (awslabs/mountpoint-s3 doc/CONFIGURATION.md at 1.22.3, the build CSI driver v2.7.0 ships):
    read-only; other users than Mountpoint's own may read (the pods run as WORKLOAD_UID); listed entries, a missing
    marker included, are trusted for metadataTtlSeconds."""
    return ["read-only", "allow-other", f"uid {WORKLOAD_UID}", f"gid {WORKLOAD_UID}", f"metadata-ttl {store.metadata_ttl_seconds}", f"region {region}"]


def publisher_mount_options(region: str) -> list[str]:
    """Writable by the pods' user. `allow-overwrite`: a retried publish rewrites the files a failed attempt left
    (each opened with O_TRUNC), and adding a Neuron target replaces the manifest; never deletes (no allow-delete)."""
    return ["allow-overwrite", "allow-other", f"uid {WORKLOAD_UID}", f"gid {WORKLOAD_UID}", f"region {region}"]


def read_policy(bucket_arn: str, key_arn: str, region: str) -> str:
    """What Mountpoint needs to list and read the bucket, SSE-KMS objects included (CONFIGURATION.md, IAM permissions)."""
    return policy_document([
        {"Sid": "ListStore", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {"Sid": "ReadModels", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/*"},
        {"Sid": "DecryptThroughS3", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ])


def write_policy(bucket_arn: str, key_arn: str, region: str) -> str:
    """Reading plus writing new objects (multipart uploads, aborted when a write fails); no deletes."""
    return policy_document([
        {"Sid": "ListStore", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {"Sid": "PublishModels", "Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"], "Resource": f"{bucket_arn}/*"},
        {"Sid": "EncryptThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ])


# On an S3 store (Mountpoint: no rename, each file written once from the start): the Hub client downloads to local
# disk (it renames its partial files), then each file is copied into the store and the marker written last.
S3_HUB_DOWNLOAD = (
    "import pathlib, shutil, sys\n"
    "from huggingface_hub import snapshot_download\n"
    "target = pathlib.Path(sys.argv[3])\n"
    "if (target / sys.argv[4]).exists():\n"
    "    sys.exit(0)\n"
    "local = pathlib.Path('/tmp/weights')\n"
    "snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2], local_dir=local, allow_patterns=['*.json', '*.safetensors', '*.txt', '*.model', '*.tiktoken'])\n"
    "files = sorted(p for p in local.rglob('*') if p.is_file() and '.cache' not in p.relative_to(local).parts)\n"
    "for path in files:\n"
    "    out = target / path.relative_to(local)\n"
    "    out.parent.mkdir(parents=True, exist_ok=True)\n"
    "    with path.open('rb') as src, out.open('wb') as dst:\n"
    "        shutil.copyfileobj(src, dst, 8 << 20)\n"
    "(target / sys.argv[4]).write_text('\\n'.join(p.relative_to(local).as_posix() for p in files) + '\\n')\n"
)
