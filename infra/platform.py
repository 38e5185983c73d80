"""The platform as one dependency graph; reads top to bottom like the architecture picture."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster, ClusterArgs
from components.network import Network, NetworkArgs
from infra import outputs
from infra.config import PlatformConfig


def availability_zones(cfg: PlatformConfig) -> list[str]:
    if cfg.network.availability_zones:
        return list(cfg.network.availability_zones)
    offered = sorted(aws.get_availability_zones(state="available", filters=[
        aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"])
    ]).names)
    return offered[: cfg.network.az_count]


def build(cfg: PlatformConfig) -> None:
    network = Network("network", NetworkArgs(config=cfg, availability_zones=availability_zones(cfg)))

    cluster = Cluster(
        "cluster",
        ClusterArgs(
            config=cfg,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
        ),
    )

    outputs.export(cfg, network=network, cluster=cluster)
