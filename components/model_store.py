"""Team model stores: one EFS access point per team, bound to a claim in that team's namespace only."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib.conventions import MODEL_STORE_CLAIM

ROOT = "/model-stores"


@dataclass(frozen=True)
class ModelStoresArgs:
    config: PlatformConfig
    provider: k8s.Provider
    file_system_id: pulumi.Input[str]
    # The EFS CSI driver (mounts) and the team namespaces the claims live in.
    csi_driver: pulumi.Resource
    team_namespaces: dict[str, pulumi.Resource]


class ModelStores(pulumi.ComponentResource):
    """Per team: an access point rooted at /model-stores/<team> that makes every file the team's POSIX identity,
    and a statically provisioned PersistentVolume pre-bound to the claim `model-store` in the team's namespace,
    so no other namespace can mount it. Retained: the models outlive claims and redeploys."""

    claims: dict[str, k8s.core.v1.PersistentVolumeClaim]

    def __init__(self, name: str, args: ModelStoresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:models:ModelStores", name, None, opts)
        cfg = args.config
        self.claims = {}
        for team, store in sorted(cfg.storage.model_stores.items()):
            access_point = aws.efs.AccessPoint(
                f"{name}-{team}",
                aws.efs.AccessPointArgs(
                    file_system_id=args.file_system_id,
                    posix_user=aws.efs.AccessPointPosixUserArgs(uid=store.uid, gid=store.group),
                    root_directory=aws.efs.AccessPointRootDirectoryArgs(
                        path=f"{ROOT}/{team}",
                        creation_info=aws.efs.AccessPointRootDirectoryCreationInfoArgs(
                            owner_uid=store.uid, owner_gid=store.group, permissions="0750"
                        ),
                    ),
                    tags=cfg.tags_for(f"{cfg.cluster_name}-model-store-{team}"),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.csi_driver, args.team_namespaces[team]])
            labels = {"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}
            volume = k8s.core.v1.PersistentVolume(
                f"{name}-{team}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"model-store-{team}", labels=labels),
                spec=k8s.core.v1.PersistentVolumeSpecArgs(
                    capacity={"storage": f"{store.size_gib}Gi"},
                    access_modes=["ReadWriteMany"],
                    persistent_volume_reclaim_policy="Retain",
                    storage_class_name="",
                    mount_options=["tls"],
                    csi=k8s.core.v1.CSIPersistentVolumeSourceArgs(
                        driver="efs.csi.aws.com",
                        volume_handle=pulumi.Output.all(args.file_system_id, access_point.id).apply(lambda v: f"{v[0]}::{v[1]}"),
                    ),
                    # Only this namespace's claim may bind it.
                    claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=team, name=MODEL_STORE_CLAIM),
                ),
                opts=k8s_opts,
            )
            self.claims[team] = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-{team}-claim",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MODEL_STORE_CLAIM, namespace=team, labels=labels),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    storage_class_name="",
                    volume_name=f"model-store-{team}",
                    access_modes=["ReadWriteMany"],
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{store.size_gib}Gi"}),
                ),
                opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[volume])),
            )
        self.register_outputs({"teams": sorted(self.claims)})
