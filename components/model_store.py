"""Team model stores, bound to claims in the team's namespace only: an EFS access point per team, or (backend s3) a
bucket of the team's own mounted through the Mountpoint for Amazon S3 CSI driver with the pods' own Pod Identity."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig, S3ModelStore
from infra.lib import model_store as store_lib
from infra.lib.buckets import private_encrypted
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PUBLISH_CLAIM
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, role_with_policies
from infra.lib.kms import encryption_key, via_service
from policies.rules.cost import BUDGETED_BY_TAG, BUDGETED_GIB_TAG

ROOT = "/model-stores"
MOUNTPOINT_ADDON = "aws-mountpoint-s3-csi-driver"


@dataclass(frozen=True)
class ModelStoresArgs:
    config: PlatformConfig
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    file_system_id: pulumi.Input[str]
    # The EFS CSI driver (mounts) and the team namespaces the claims live in.
    csi_driver: pulumi.Resource
    team_namespaces: dict[str, pulumi.Resource]
    # What the Mountpoint add-on needs first: the cluster's critical add-ons (the Pod Identity agent among them), and
    # the cpu NodePool its controller schedules on.
    depends_on: list[pulumi.Resource]
    general_capacity: pulumi.Resource


class ModelStores(pulumi.ComponentResource):
    """Per team, a claim `model-store` every pod of the team reads the store through, pre-bound to a statically
    provisioned, retained PersistentVolume (the models outlive claims and redeploys). On S3, a second claim
    `model-store-publish` for the pods that publish. A consumer that depends on `claims[team]` waits for all of it."""

    claims: dict[str, pulumi.Resource]
    # By S3-backed team: what publishing into its store takes (IAM policy JSON), for a publisher the wiring knows of
    # whose role is another component's (the team's Kubeflow Pipelines runner).
    publish_policies: dict[str, pulumi.Output[str]]
    buckets: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ModelStoresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:models:ModelStores", name, None, opts)
        cfg = args.config
        self.claims, self.buckets, self.publish_policies = {}, {}, {}
        s3_stores = cfg.storage.s3_stores()
        mountpoint = self._mountpoint_driver(args) if s3_stores else None
        for team, store in sorted(cfg.storage.model_stores.items()):
            if team in s3_stores:
                assert mountpoint is not None
                self.claims[team] = self._s3_store(name, team, s3_stores[team], store.size_gib, mountpoint, args)
            else:
                self.claims[team] = self._efs_store(name, team, store, args)
        self.register_outputs({"teams": sorted(self.claims)})

    @staticmethod
    def _labels(team: str) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}

    def _static_claim(self, resource_name: str, volume_name: str, claim: str, team: str, size_gib: int, access: str,
                      spec: dict, opts: pulumi.ResourceOptions, claim_deps: list[pulumi.Resource]) -> k8s.core.v1.PersistentVolumeClaim:
        labels = self._labels(team)
        volume = k8s.core.v1.PersistentVolume(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=volume_name, labels=labels),
            spec=k8s.core.v1.PersistentVolumeSpecArgs(
                capacity={"storage": f"{size_gib}Gi"},
                access_modes=[access],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                # Only this namespace's claim may bind it.
                claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=team, name=claim),
                **spec,
            ),
            opts=opts,
        )
        return k8s.core.v1.PersistentVolumeClaim(
            f"{resource_name}-claim",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=claim, namespace=team, labels=labels),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                storage_class_name="",
                volume_name=volume_name,
                access_modes=[access],
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{size_gib}Gi"}),
            ),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[volume, *claim_deps])),
        )

    def _efs_store(self, name: str, team: str, store, args: ModelStoresArgs) -> pulumi.Resource:
        """An access point rooted at /model-stores/<team> that makes every file the team's POSIX identity."""
        cfg = args.config
        access_point = aws.efs.AccessPoint(
            f"{name}-{team}",
            aws.efs.AccessPointArgs(
                file_system_id=args.file_system_id,
                posix_user=aws.efs.AccessPointPosixUserArgs(uid=store.uid, gid=store.group),
                root_directory=aws.efs.AccessPointRootDirectoryArgs(
                    path=f"{ROOT}/{team}",
                    creation_info=aws.efs.AccessPointRootDirectoryCreationInfoArgs(owner_uid=store.uid, owner_gid=store.group, permissions="0750"),
                ),
                tags=cfg.tags_for(f"{cfg.cluster_name}-model-store-{team}"),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        spec = {
            "mount_options": ["tls"],
            "csi": k8s.core.v1.CSIPersistentVolumeSourceArgs(
                driver="efs.csi.aws.com",
                volume_handle=pulumi.Output.all(args.file_system_id, access_point.id).apply(lambda v: f"{v[0]}::{v[1]}"),
            ),
        }
        opts = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.csi_driver, args.team_namespaces[team]])
        return self._static_claim(f"{name}-{team}", f"model-store-{team}", MODEL_STORE_CLAIM, team, store.size_gib, "ReadWriteMany", spec, opts, [])

    def _mountpoint_driver(self, args: ModelStoresArgs) -> aws.eks.Addon:
        """The Mountpoint for Amazon S3 CSI driver v2 as an EKS add-on. Every store volume authenticates with the
        mounting pod's own Pod Identity (authenticationSource: pod), so the driver's service account gets no role:
        the driver itself never reaches S3 (docs/CONFIGURATION.md at v2.7.0, "Pod-Level Credentials")."""
        cfg = args.config
        return aws.eks.Addon(
            f"{cfg.cluster_name}-{MOUNTPOINT_ADDON}",
            aws.eks.AddonArgs(
                cluster_name=args.cluster_name,
                addon_name=MOUNTPOINT_ADDON,
                addon_version=cfg.storage.mountpoint_csi_driver_version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                tags=cfg.tags_for(f"{cfg.cluster_name}-{MOUNTPOINT_ADDON}"),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, args.general_capacity]),
        )

    def _s3_store(self, name: str, team: str, store: S3ModelStore, size_gib: int, driver: aws.eks.Addon, args: ModelStoresArgs) -> pulumi.Resource:
        cfg = args.config
        protect = cfg.storage.protect
        rn = f"{name}-{team}"
        tags = cfg.tags_for(store.bucket_name)
        key = encryption_key(
            rn, alias=f"{cfg.cluster_name}-model-store-{team}", description=f"Model store of team {team} in {cfg.cluster_name}",
            tags=cfg.tags_for(f"{store.bucket_name}-key"), parent=self, service_use=[via_service("s3", cfg.region)], protect=protect,
        )
        bucket = aws.s3.Bucket(
            rn, bucket=store.bucket_name, force_destroy=False,
            tags={**tags, BUDGETED_GIB_TAG: str(store.budgeted_gib), BUDGETED_BY_TAG: f"storage.modelStores.{team}.s3.budgetedGib"},
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        settings = private_encrypted(rn, bucket, key.arn, aws.s3.BucketLifecycleConfigurationRuleArgs(
            # Versions are immutable: current objects never expire; replaced ones (a manifest that gained a Neuron
            # target, a file a retried publish rewrote) go after noncurrentDays.
            id="replaced-objects", status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=store.noncurrent_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7),
        ), parent=self)
        self.buckets[team] = bucket.bucket
        self.publish_policies[team] = pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: store_lib.write_policy(a[0], a[1], cfg.region))

        # Pod Identity per service account: the readers' role only reads, the publishers' also writes.
        identities: list[pulumi.Resource] = []
        for access, policy, accounts in (
            ("read", store_lib.read_policy, store_lib.readers(cfg, team)),
            ("publish", store_lib.write_policy, store_lib.publishers(cfg, team)),
        ):
            if not accounts:
                continue
            role = role_with_policies(
                f"{rn}-{access}", trust=POD_IDENTITY_TRUST, tags=cfg.tags_for(f"{cfg.cluster_name}-model-store-{team}-{access}"), parent=self,
                policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a, p=policy: p(a[0], a[1], cfg.region)),
                description=f"Team {team}: {access} its model store (bucket {store.bucket_name}) through Mountpoint",
            )
            identities += role.attachments
            identities += [
                pod_identity(
                    f"{rn}-{account}", cluster_name=args.cluster_name, namespace=team, service_account=account, role=role.role,
                    tags=cfg.tags_for(f"{cfg.cluster_name}-model-store-{team}-{access}"), parent=self,
                )
                for account in accounts
            ]

        opts = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[driver, args.team_namespaces[team], *settings])

        def s3_volume(handle: str, options: list[str], attributes: dict[str, str]) -> dict:
            return {
                "mount_options": options,
                "csi": k8s.core.v1.CSIPersistentVolumeSourceArgs(
                    driver=store_lib.S3_DRIVER,
                    volume_handle=handle,
                    volume_attributes={"bucketName": store.bucket_name, "authenticationSource": "pod", **attributes},
                ),
            }

        publish = self._static_claim(
            f"{rn}-publish", f"model-store-publish-{team}", MODEL_STORE_PUBLISH_CLAIM, team, size_gib, "ReadWriteMany",
            s3_volume(f"model-store-publish-{team}", store_lib.publisher_mount_options(cfg.region), {}), opts, [],
        )
        # The reader claim comes last: a pod that depends on it finds the publishing claim and every role and
        # association of the store in place, so its mount never races its credentials.
        return self._static_claim(
            rn, f"model-store-{team}", MODEL_STORE_CLAIM, team, size_gib, "ReadOnlyMany",
            s3_volume(f"model-store-{team}", store_lib.reader_mount_options(store, cfg.region),
                      {"cache": "emptyDir", "cacheEmptyDirSizeLimit": f"{store.cache_gib}Gi"}),
            opts, [publish, *identities],
        )
