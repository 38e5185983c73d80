"""The stack outputs: a versioned contract that app teams read through StackReference."""
from __future__ import annotations

import pulumi

from components.cluster import Cluster
from components.karpenter import Karpenter
from components.network import Network
from infra.config import PlatformConfig

SCHEMA_VERSION = "1.0.0"


def export(cfg: PlatformConfig, *, network: Network, cluster: Cluster, karpenter: Karpenter) -> None:
    pulumi.export("schemaVersion", SCHEMA_VERSION)
    pulumi.export("environment", cfg.environment)
    pulumi.export("region", cfg.region)
    pulumi.export(
        "cluster",
        {
            "name": cluster.name,
            "endpoint": cluster.endpoint,
            "version": cluster.version,
            "oidcProviderArn": cluster.oidc_provider_arn,
            "oidcIssuer": cluster.oidc_issuer,
            "securityGroupId": cluster.security_group_id,
            "defaultStorageClass": cluster.default_storage_class,
        },
    )
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export(
        "network",
        {
            "vpcId": network.vpc_id,
            "availabilityZones": network.availability_zones,
            "privateSubnetIds": network.private_subnet_ids,
            "publicSubnetIds": network.public_subnet_ids,
        },
    )
    pulumi.export(
        "nodePools",
        {
            name: {
                "name": pool.name,
                "nodeSelector": pool.labels,
                "taint": pool.taint,
                "toleration": {**pool.taint, "operator": "Equal"} if pool.taint else None,
                "extendedResource": pool.extended_resource,
                "capacityTypes": pool.capacity_types,
            }
            for name, pool in sorted(karpenter.node_pools.items())
        },
    )
