"""The stack's worst-case hourly cost, as the program states it in its outputs.

The synth and the policy pack price the registered graph (policies/rules/cost.py); the program prices the same
resources as it plans them from the config, so the figure reaches the stack outputs under the real engine too.
tests/test_cost.py holds the two equal for every stack.
"""
from __future__ import annotations

import datetime
from typing import Any

from components.network import ECR_ENDPOINT_SERVICES
from components.karpenter import node_pool_annotations, node_pool_spec, static_held, static_node_pool_spec
from infra.lib.accelerators import KINDS
from infra.config import ConfigError, PlatformConfig
from infra.config.streaming import broker_zones
from policies.rules.cost import (
    AURORA_CLUSTER,
    AURORA_INSTANCE,
    BUDGET,
    BUDGETED_BY_TAG,
    BUDGETED_GIB_TAG,
    S3_BUCKET,
    EKS_CAPABILITY,
    MSK_CLUSTER,
    MSK_SERVERLESS,
    MSK_TOPIC,
    STORAGE_TARGET,
    MAX_HOURLY_TAG,
    NODE_CLASS,
    NODE_LOG_RATE_TAG,
    NODE_POOL,
    PRICE_REGION_TAG,
    PRICE_TABLE_TAG,
    MissingTable,
    SPOT_FRACTION_TAG,
    Ceiling,
    PriceError,
    ceiling,
)


def planned_resources(cfg: PlatformConfig) -> list[tuple[str, dict[str, Any]]]:
    """(type, properties) of every resource the cost model prices, as the components build them."""
    zones = len(cfg.network.availability_zones) if cfg.network.availability_zones else cfg.network.az_count
    nat = zones if cfg.network.nat_gateways == "perAz" else 1
    ng = cfg.cluster.system_node_group
    planned: list[tuple[str, dict[str, Any]]] = [
        ("aws:eks/cluster:Cluster", {"version": cfg.cluster.kubernetes_version}),
        ("aws:eks/nodeGroup:NodeGroup", {"scalingConfig": {"maxSize": ng.max_size}, "instanceTypes": list(ng.instance_types)}),
        ("aws:ec2/launchTemplate:LaunchTemplate", {"blockDeviceMappings": [{"ebs": {"volumeSize": ng.disk_size_gib}}]}),
        *[("aws:ec2/natGateway:NatGateway", {})] * nat,
        *[("aws:ec2/eip:Eip", {})] * nat,
        ("aws:ec2/vpcEndpoint:VpcEndpoint", {"vpcEndpointType": "Interface", "serviceName": f"com.amazonaws.{cfg.region}.logs", "subnetIds": [""] * zones}),
        *[("aws:ec2/vpcEndpoint:VpcEndpoint", {"vpcEndpointType": "Interface", "serviceName": f"com.amazonaws.{cfg.region}.{service}", "subnetIds": [""] * zones})
          for service in (ECR_ENDPOINT_SERVICES if cfg.network.ecr_endpoints else ())],
        ("kubernetes:core/v1:Service", {"spec": {"type": "LoadBalancer"}}),
        ("aws:cloudwatch/logGroup:LogGroup", {"name": f"/ml-platform/{cfg.cluster_name}/platform", "retentionInDays": cfg.logging.retention_days}),
        (BUDGET, {"tags": {
            MAX_HOURLY_TAG: f"{cfg.budget.max_hourly_usd:g}",
            SPOT_FRACTION_TAG: f"{cfg.budget.spot_price_fraction:g}",
            NODE_LOG_RATE_TAG: str(cfg.logging.node_log_rate_kib_per_second),
            PRICE_REGION_TAG: cfg.region,
            **({PRICE_TABLE_TAG: cfg.budget.price_table_region} if cfg.budget.price_table_region else {}),
        }}),
    ]
    for name, pool in cfg.node_pools.enabled().items():
        static = static_held(pool, cfg.region, cfg.budget.price_table_region)
        planned.append((NODE_POOL, {"metadata": {"name": name, "annotations": node_pool_annotations(pool)}, "spec": node_pool_spec(name, pool, KINDS[name], static)}))
        if static:
            planned.append((NODE_POOL, {"metadata": {"name": f"{name}-static"}, "spec": static_node_pool_spec(name, pool, KINDS[name])}))
        planned.append((NODE_CLASS, {"metadata": {"name": name}, "spec": {"blockDeviceMappings": [{"ebs": {"volumeSize": f"{pool.root_volume_gib}Gi"}}]}}))
    search = cfg.logging.open_search
    if search.enabled:
        planned.append(("aws:opensearch/domain:Domain", {
            "clusterConfig": {
                "instanceType": search.instance_type,
                "instanceCount": search.instance_count,
                "dedicatedMasterEnabled": search.dedicated_manager_type is not None,
                "dedicatedMasterType": search.dedicated_manager_type,
                "dedicatedMasterCount": 3 if search.dedicated_manager_type else None,
            },
            "ebsOptions": {"volumeSize": search.volume_gib},
        }))
    planned.extend(streaming_resources(cfg))
    planned.extend(pipelines_resources(cfg))
    planned.extend(model_store_resources(cfg))
    if cfg.gitops.enabled and cfg.gitops.mode == "capability":
        planned.append((EKS_CAPABILITY, {"type": "ARGOCD"}))
    planned.extend(database_resources(cfg))
    return planned


def pipelines_resources(cfg: PlatformConfig) -> list[tuple[str, dict[str, Any]]]:
    """The pipeline artifacts bucket, as components/pipelines.py creates it. The KFP servers run on the cpu pool,
    whose limit the model already prices."""
    artifacts = cfg.kubeflow.pipelines.artifacts
    if not cfg.kubeflow.pipelines_on or artifacts is None:
        return []
    return [(S3_BUCKET, {"bucket": artifacts.bucket_name, "tags": {BUDGETED_GIB_TAG: str(artifacts.budgeted_gib)}})]


def model_store_resources(cfg: PlatformConfig) -> list[tuple[str, dict[str, Any]]]:
    """The S3 model stores' buckets, as components/model_store.py creates them."""
    return [
        (S3_BUCKET, {"bucket": s3.bucket_name, "tags": {BUDGETED_GIB_TAG: str(s3.budgeted_gib), BUDGETED_BY_TAG: f"storage.modelStores.{team}.s3.budgetedGib"}})
        for team, s3 in cfg.storage.s3_stores().items()
    ]


def database_resources(cfg: PlatformConfig) -> list[tuple[str, dict[str, Any]]]:
    """The Aurora cluster and its instances, as components/database.py builds them."""
    db = cfg.database
    if not db.enabled:
        return []
    return [
        (AURORA_CLUSTER, {"serverlessv2ScalingConfiguration": {"maxCapacity": db.max_capacity}}),
        *[(AURORA_INSTANCE, {"instanceClass": "db.serverless"})] * db.instances,
    ]


def streaming_resources(cfg: PlatformConfig) -> list[tuple[str, dict[str, Any]]]:
    """The MSK resources the cost model prices, as components/streaming.py builds them."""
    spec = cfg.streaming
    if not spec.enabled:
        return []
    topics = [(MSK_TOPIC, {"partitionCount": t.partitions}) for team in spec.teams.values() for t in team.topics]
    if spec.mode == "serverless":
        return [(MSK_SERVERLESS, {}), *topics]
    prov = spec.provisioned
    zones = broker_zones(cfg.region, len(cfg.network.availability_zones) if cfg.network.availability_zones else cfg.network.az_count)
    return [
        (MSK_CLUSTER, {
            "numberOfBrokerNodes": zones * prov.brokers_per_zone,
            "brokerNodeGroupInfo": {"instanceType": prov.instance_type, "storageInfo": {"ebsStorageInfo": {"volumeSize": prov.volume_gib}}},
        }),
        (STORAGE_TARGET, {"serviceNamespace": "kafka", "maxCapacity": prov.max_volume_gib}),
        *topics,
    ]


def checked_ceiling(cfg: PlatformConfig, today: datetime.date) -> Ceiling:
    """The ceiling, or a ConfigError before any resource exists: a pool allows an instance type the price table
    lacks, or the fixed costs alone exceed the budget."""
    try:
        result = ceiling(planned_resources(cfg), cfg.region, today)
    except MissingTable as exc:
        raise ConfigError(f"invalid configuration:\n  aws:region: {exc}") from None
    except PriceError as exc:
        raise ConfigError(f"invalid configuration:\n  ml-platform:nodePools: {exc}") from None
    if result.fixed > cfg.budget.max_hourly_usd:
        items = ", ".join(f"{i.name} ${i.hourly_usd:,.2f}" for i in result.items if i.kind == "fixed")
        raise ConfigError(
            f"invalid configuration:\n  ml-platform:budget.maxHourlyUsd: {cfg.budget.max_hourly_usd:g} is below the stack's "
            f"fixed costs, which no pool limit scales away (${result.fixed:,.2f}/h: {items}); raise it, or shrink "
            f"{result.dominant('fixed')[0]}, which weighs most"
        )
    return result


def output(cfg: PlatformConfig, result: Ceiling) -> dict[str, Any]:
    """The `cost` stack output: the ceiling, the budget it is held to, and the pool that weighs most."""
    top = result.top_pool()
    return {
        "ceilingHourlyUsd": round(result.total, 2),
        "fixedHourlyUsd": round(result.fixed, 2),
        "budgetHourlyUsd": cfg.budget.max_hourly_usd,
        "largestPool": top.name if top else None,
        "pricesDate": result.prices_date,
    }
