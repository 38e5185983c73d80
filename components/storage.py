"""Shared storage: an encrypted EFS file system, the EFS CSI driver and storage classes for ML data."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib.iam import POD_IDENTITY_TRUST, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service

NFS_PORT = 2049
EFS_PROVISIONER = "efs.csi.aws.com"


def file_system_policy(file_system_arn: str) -> str:
    """Once a file-system policy exists EFS grants only what it allows: the CSI driver mounts as an anonymous
    client, so mounting and writing are allowed through the mount targets, and only over TLS. No root access:
    every volume is an access point that enforces its own POSIX identity."""
    return policy_document(
        [
            {
                "Sid": "AllowMountThroughMountTargets",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": file_system_arn,
                "Condition": {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            },
            {
                "Sid": "DenyUnencryptedTransport",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "*",
                "Resource": file_system_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ]
    )


@dataclass(frozen=True)
class StorageArgs:
    config: PlatformConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Output[str]]
    cluster_name: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    provider: k8s.Provider
    depends_on: list[pulumi.Resource]


@dataclass(frozen=True)
class StorageClassInfo:
    name: str
    purpose: str
    reclaim_policy: str
    access_modes: list[str]


class Storage(pulumi.ComponentResource):
    file_system_id: pulumi.Output[str]
    csi_driver: aws.eks.Addon
    classes: dict[str, StorageClassInfo]
    class_resources: list[k8s.storage.v1.StorageClass]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:storage:Storage", name, None, opts)
        cfg, sc = args.config, args.config.storage
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)

        key = encryption_key(
            f"{name}-efs",
            alias=f"{cluster_name}-efs",
            description=f"EFS encryption for {cluster_name}",
            tags=cfg.tags_for(f"{cluster_name}-efs"),
            parent=self,
            service_use=[via_service("elasticfilesystem", cfg.region)],
            protect=sc.protect,
        )
        lifecycle = [aws.efs.FileSystemLifecyclePolicyArgs(transition_to_primary_storage_class="AFTER_1_ACCESS")]
        if sc.transition_to_ia:
            lifecycle.insert(0, aws.efs.FileSystemLifecyclePolicyArgs(transition_to_ia=sc.transition_to_ia))
        fs = aws.efs.FileSystem(
            f"{name}-efs",
            aws.efs.FileSystemArgs(
                encrypted=True,
                kms_key_id=key.arn,
                performance_mode="generalPurpose",
                throughput_mode=sc.throughput_mode,
                lifecycle_policies=lifecycle,
                tags=cfg.tags_for(f"{cluster_name}-efs"),
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=sc.protect),
        )
        aws.efs.BackupPolicy(
            f"{name}-efs",
            aws.efs.BackupPolicyArgs(
                file_system_id=fs.id,
                backup_policy=aws.efs.BackupPolicyBackupPolicyArgs(status="ENABLED" if sc.backups else "DISABLED"),
            ),
            opts=child,
        )
        aws.efs.FileSystemPolicy(
            f"{name}-efs",
            aws.efs.FileSystemPolicyArgs(file_system_id=fs.id, policy=fs.arn.apply(file_system_policy)),
            opts=child,
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-efs",
            aws.ec2.SecurityGroupArgs(
                description=f"NFS to EFS from the nodes of {cluster_name}",
                vpc_id=args.vpc_id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="NFS from cluster nodes",
                        protocol="tcp",
                        from_port=NFS_PORT,
                        to_port=NFS_PORT,
                        security_groups=[args.node_security_group_id],
                    )
                ],
                egress=[],
                tags=cfg.tags_for(f"{cluster_name}-efs"),
            ),
            opts=child,
        )
        mount_targets = [
            aws.efs.MountTarget(
                f"{name}-efs-{i}",
                aws.efs.MountTargetArgs(file_system_id=fs.id, subnet_id=subnet, security_groups=[security_group.id]),
                opts=child,
            )
            for i, subnet in enumerate(args.private_subnet_ids)
        ]

        driver_role = role_with_policies(
            f"{name}-efs-csi",
            trust=POD_IDENTITY_TRUST,
            managed=["arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"],
            tags=cfg.tags_for(f"{cluster_name}-efs-csi"),
            parent=self,
        )
        driver = aws.eks.Addon(
            f"{cluster_name}-aws-efs-csi-driver",
            aws.eks.AddonArgs(
                cluster_name=args.cluster_name,
                addon_name="aws-efs-csi-driver",
                addon_version=sc.efs_csi_driver_version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=[
                    aws.eks.AddonPodIdentityAssociationArgs(service_account="efs-csi-controller-sa", role_arn=driver_role.role.arn)
                ],
                tags=cfg.tags_for(f"{cluster_name}-aws-efs-csi-driver"),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*driver_role.attachments, *mount_targets, *args.depends_on]),
        )

        self.classes, self.class_resources = {}, []
        for class_name, spec in sorted(sc.classes.items()):
            storage_class = k8s.storage.v1.StorageClass(
                f"{name}-{class_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=class_name,
                    annotations={"ml-platform.io/purpose": spec.purpose},
                    labels={"app.kubernetes.io/part-of": "ml-platform"},
                ),
                provisioner=EFS_PROVISIONER,
                parameters={
                    # One access point per volume, owned by the workload's uid/gid, under the class's base path.
                    "provisioningMode": "efs-ap",
                    "fileSystemId": fs.id,
                    "directoryPerms": spec.directory_perms,
                    "uid": str(spec.uid),
                    "gid": str(spec.gid),
                    "basePath": spec.base_path,
                    "subPathPattern": "${.PVC.namespace}/${.PVC.name}",
                    "ensureUniqueDirectory": "true",
                },
                mount_options=["tls"],
                reclaim_policy=sc.reclaim_policy,
                volume_binding_mode="Immediate",
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[driver]),
            )
            self.class_resources.append(storage_class)
            self.classes[class_name] = StorageClassInfo(class_name, spec.purpose, sc.reclaim_policy, ["ReadWriteMany"])

        self.file_system_id = fs.id
        self.csi_driver = driver
        self.register_outputs({"fileSystemId": self.file_system_id, "storageClasses": sorted(self.classes)})
