"""EKS cluster settings: version, endpoint, administrators, the system node group and managed add-ons."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator

from infra.config.base import AddonVersion, Cidr, IamRoleArn, Model, RetentionDays
from policies.rules.capacity import INSTANCE_TYPES

SUPPORTED_KUBERNETES_VERSIONS = ("1.32", "1.33", "1.34", "1.35")

NODE_AMI_TYPES = ("AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD")


class EndpointAccess(Model):
    private_access: Literal[True] = True
    public_access: bool = False
    public_access_cidrs: list[Cidr] = []

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> "EndpointAccess":
        if self.public_access and not self.public_access_cidrs:
            raise ValueError("publicAccess is on but publicAccessCidrs is empty; list the CIDRs allowed to reach the API")
        if not self.public_access and self.public_access_cidrs:
            raise ValueError("publicAccessCidrs is set but publicAccess is off")
        return self


class ClusterAccess(Model):
    """Who administers the cluster. Prefer listing the roles, including the one Pulumi runs as: access entries
    in the stack are auditable and survive the creator's departure. `clusterCreatorAdmin` lets EKS bootstrap an
    entry for whoever creates the cluster; that identity must then not be listed too (the preflight checks)."""

    admin_role_arns: list[IamRoleArn] = []
    cluster_creator_admin: bool = False

    @model_validator(mode="after")
    def _someone_is_admin(self) -> "ClusterAccess":
        if not self.admin_role_arns and not self.cluster_creator_admin:
            raise ValueError(
                "adminRoleArns is empty and clusterCreatorAdmin is false, so nobody could administer the cluster; list the "
                "admin role ARNs (the role Pulumi runs as among them), or set clusterCreatorAdmin: true to let EKS admit the creator"
            )
        return self


class SystemNodeGroup(Model):
    instance_types: Annotated[list[str], Field(min_length=1)] = ["m7i.large"]
    ami_type: Literal[NODE_AMI_TYPES] = "AL2023_x86_64_STANDARD"  # type: ignore[valid-type]
    # EKS-optimized AMI release for the node group; None takes the newest at creation and then stays put.
    release_version: Optional[Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+-\d{8}$")]] = None
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=1, le=50)] = 2
    desired_size: Annotated[int, Field(ge=1, le=50)] = 2
    max_size: Annotated[int, Field(ge=1, le=50)] = 4
    disk_size_gib: Annotated[int, Field(ge=20, le=1000)] = 50

    @field_validator("instance_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if t not in INSTANCE_TYPES]
        if unknown:
            # The placement check needs each type's allocatable capacity (policies/rules/capacity.py).
            raise ValueError(
                f"{', '.join(unknown)} not in the capacity table; use one of {', '.join(sorted(INSTANCE_TYPES))} "
                "or add the type with its source to policies/rules/capacity.py"
            )
        return types

    @model_validator(mode="after")
    def _sizes(self) -> "SystemNodeGroup":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"minSize <= desiredSize <= maxSize must hold, got {self.min_size}, {self.desired_size}, {self.max_size}")
        return self


class AddonVersions(Model):
    vpc_cni: AddonVersion = "v1.21.1-eksbuild.3"
    coredns: AddonVersion = "v1.13.2-eksbuild.1"
    kube_proxy: AddonVersion = "v1.35.0-eksbuild.2"
    eks_pod_identity_agent: AddonVersion = "v1.3.9-eksbuild.3"
    aws_ebs_csi_driver: AddonVersion = "v1.51.1-eksbuild.1"


class ClusterConfig(Model):
    name: Optional[Annotated[str, Field(pattern=r"^[a-zA-Z][-a-zA-Z0-9]{0,99}$")]] = None
    kubernetes_version: Literal[SUPPORTED_KUBERNETES_VERSIONS] = "1.35"  # type: ignore[valid-type]
    endpoint: EndpointAccess = EndpointAccess()
    access: ClusterAccess
    log_retention_days: RetentionDays = 90
    service_ipv4_cidr: Cidr = "172.20.0.0/16"
    deletion_protection: bool = False
    system_node_group: SystemNodeGroup = SystemNodeGroup()
    addons: AddonVersions = AddonVersions()

    @model_validator(mode="after")
    def _kube_proxy_matches(self) -> "ClusterConfig":
        minor = re.match(r"^v(\d+\.\d+)\.", self.addons.kube_proxy).group(1)  # type: ignore[union-attr]
        if minor != self.kubernetes_version:
            raise ValueError(
                f"addons.kubeProxy {self.addons.kube_proxy} is for Kubernetes {minor} but kubernetesVersion is "
                f"{self.kubernetes_version}; pin the kube-proxy build for {self.kubernetes_version}"
            )
        return self
