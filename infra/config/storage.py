"""Shared storage settings: EFS, its storage classes and the teams' model stores."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from infra.config.base import AddonVersion, DnsLabel, Model

class EfsStorageClass(Model):
    purpose: Annotated[str, Field(min_length=3)]
    base_path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    uid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    gid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    directory_perms: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "750"


class ModelStore(Model):
    """A team's model store: an EFS access point rooted at /model-stores/<team>, whose files all belong to this
    POSIX identity whatever the client's; only pods in the team's namespace can claim it."""

    uid: Annotated[int, Field(ge=1000, le=2147483647)]
    gid: Optional[Annotated[int, Field(ge=1000, le=2147483647)]] = None
    size_gib: Annotated[int, Field(ge=1, le=1000000)] = 1000

    @property
    def group(self) -> int:
        return self.gid if self.gid is not None else self.uid


class StorageConfig(Model):
    efs_csi_driver_version: AddonVersion = "v2.1.13-eksbuild.1"
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
