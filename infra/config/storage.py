"""Shared storage settings: EFS, its storage classes and the teams' model stores."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import AddonVersion, DnsLabel, Model
from infra.config.kubeflow import BucketName

class EfsStorageClass(Model):
    purpose: Annotated[str, Field(min_length=3)]
    base_path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    uid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    gid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    directory_perms: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "750"


class S3ModelStore(Model):
    """A team's S3 model store: its own bucket, mounted through Mountpoint for Amazon S3 (docs/app-teams/model-store.md)."""

    # Globally unique: include the account id, like ml-platform-prod-models-nlp-111122223333.
    bucket_name: BucketName
    # The storage the cost ceiling counts for the bucket (S3 has no size limit to price).
    budgeted_gib: Annotated[int, Field(ge=1, le=10_000_000)] = 500
    # Overwritten objects (a version's manifest when a Neuron target is added) stay recoverable this long.
    noncurrent_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Each serving node's Mountpoint keeps recently read weights on local disk (an emptyDir of this size).
    cache_gib: Annotated[int, Field(ge=1, le=1000)] = 20
    # How long a serving mount trusts what it listed; a new version's marker shows up at most this much later.
    metadata_ttl_seconds: Annotated[int, Field(ge=1, le=3600)] = 60


class ModelStore(Model):
    """A team's model store. `efs` (default): an EFS access point rooted at /model-stores/<team>, whose files all
    belong to this POSIX identity whatever the client's. `s3`: a bucket of the team's own, mounted through
    Mountpoint with the pods' own Pod Identity. Either way only pods in the team's namespace can claim it."""

    backend: Literal["efs", "s3"] = "efs"
    uid: Optional[Annotated[int, Field(ge=1000, le=2147483647)]] = None
    gid: Optional[Annotated[int, Field(ge=1000, le=2147483647)]] = None
    size_gib: Annotated[int, Field(ge=1, le=1000000)] = 1000
    s3: Optional[S3ModelStore] = None

    @model_validator(mode="after")
    def _backend_settings(self) -> "ModelStore":
        problems = []
        if self.backend == "efs":
            if self.uid is None:
                problems.append("uid: an EFS store needs the POSIX uid its files belong to (1000 or more)")
            if self.s3 is not None:
                problems.append("s3: Mountpoint settings on an EFS store; set backend: s3 to keep the models in S3")
        else:
            if self.s3 is None:
                problems.append("s3.bucketName: an S3 store needs its bucket's name (globally unique, like ml-platform-staging-models-nlp-111122223333)")
            for key in ("uid", "gid"):
                if getattr(self, key) is not None:
                    problems.append(f"{key}: only an EFS store has a POSIX identity; an S3 store's files belong to the pods' user")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def group(self) -> Optional[int]:
        return self.gid if self.gid is not None else self.uid


class StorageConfig(Model):
    efs_csi_driver_version: AddonVersion = "v2.1.13-eksbuild.1"
    # The Mountpoint for Amazon S3 CSI driver (EKS add-on aws-mountpoint-s3-csi-driver, v2), installed when a team's
    # model store is on S3; the preflight checks the build is offered for cluster.kubernetesVersion.
    mountpoint_csi_driver_version: AddonVersion = "v2.7.0-eksbuild.1"
    throughput_mode: Literal["elastic", "bursting"] = "elastic"
    transition_to_ia: Optional[Literal["AFTER_7_DAYS", "AFTER_14_DAYS", "AFTER_30_DAYS", "AFTER_60_DAYS", "AFTER_90_DAYS"]] = "AFTER_30_DAYS"
    backups: bool = False
    # Pulumi refuses to delete a protected file system: datasets and checkpoints outlive a mistaken destroy.
    protect: bool = False
    reclaim_policy: Literal["Retain", "Delete"] = "Delete"
    classes: Annotated[dict[DnsLabel, EfsStorageClass], Field(min_length=1)] = {
        "efs-shared": EfsStorageClass(purpose="datasets and training checkpoints shared by a team", base_path="/shared"),
    }
    # Per team (by name): where its trained and downloaded models live, versioned.
    model_stores: dict[DnsLabel, ModelStore] = {}

    def s3_stores(self) -> dict[str, S3ModelStore]:
        return {team: store.s3 for team, store in sorted(self.model_stores.items()) if store.backend == "s3" and store.s3}
