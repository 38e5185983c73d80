"""Streaming ingestion: an Amazon MSK cluster in the private subnets, reachable from the nodes only, with IAM
access control and TLS; per team, its topics and a Pod Identity role granting exactly those topics and groups."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.config.streaming import DataPrep, broker_zones
from infra.lib import monitoring
from infra.lib.accelerators import POOL_LABEL
from infra.lib.conventions import MONITORING_NAMESPACE
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service
from infra.lib.security_groups import nodes_only
from infra.lib.network_policies import POD_IDENTITY_AGENT_EGRESS

core, meta = k8s.core.v1, k8s.meta.v1

# Brokers listen for SASL/IAM over TLS on 9098 inside the VPC, in both cluster types (MSK port reference).
IAM_PORT = 9098
# MSK Serverless keeps three replicas of every partition, whatever is asked.
SERVERLESS_REPLICATION = 3


@dataclass(frozen=True)
class StreamingArgs:
    config: PlatformConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    # The EKS cluster security group every node carries: the only source allowed to reach the brokers.
    node_security_group_id: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    provider: k8s.Provider
    team_namespaces: dict[str, pulumi.Resource]
    vpc_cidr: str
    # The data-prep consumers: the CPU pool they run on, and what serves their lag metric to the autoscaler.
    general_capacity: pulumi.Resource
    metrics_adapter: pulumi.Resource
    # Where the lag dashboard goes (the platform's dashboards' namespace).
    monitoring_namespace: pulumi.Resource


def team_topic(team: str, topic: str) -> str:
    """A team's topic on the shared cluster: prefixed with the team, so two teams never collide."""
    return f"{team}.{topic}"


def resource_arn(cluster_arn: str, kind: str, name: str) -> str:
    """Topic and group ARNs share the cluster's name and UUID: arn:...:cluster/<name>/<uuid> -> arn:...:<kind>/<name>/<uuid>/<name>."""
    prefix, _, rest = cluster_arn.partition(":cluster/")
    return f"{prefix}:{kind}/{rest}/{name}"


DATA_PREP = "data-prep"
METRICS_PORT = 9102
RUN_AS = 10001
# Pods that talk to the team's topics carry it: the NetworkPolicy opening the brokers' port selects them.
KAFKA_CLIENT_LABEL = {"ml-platform.io/kafka-client": "true"}


def kafka_egress_policy(vpc_cidr: str) -> dict[str, Any]:
    """Team namespaces deny egress by default and open HTTPS outside the VPC only; Kafka clients also reach the
    brokers (in the VPC's private subnets, behind their own security group) and the Pod Identity agent."""
    return {
        "podSelector": {"matchLabels": KAFKA_CLIENT_LABEL},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [{"protocol": "TCP", "port": IAM_PORT}]},
            POD_IDENTITY_AGENT_EGRESS,
        ],
    }


def data_prep_env(dp: DataPrep, team: str, region: str) -> dict[str, str]:
    return {
        "TOPIC": team_topic(team, dp.topic),
        "GROUP_ID": team_topic(team, dp.consumer_group),
        "AWS_REGION": region,
        "OUTPUT_DIR": "/data/prepared",
        "METRICS_PORT": str(METRICS_PORT),
    }


def data_prep_pod_spec(dp: DataPrep, service_account: str, env: list[core.EnvVarArgs]) -> core.PodSpecArgs:
    probe = lambda period, failures: core.ProbeArgs(  # noqa: E731
        http_get=core.HTTPGetActionArgs(path="/healthz", port="metrics"), period_seconds=period, failure_threshold=failures
    )
    memory = f"{dp.memory_mib}Mi"
    return core.PodSpecArgs(
        service_account_name=service_account,
        # Pod Identity mounts its own token; the consumer never calls the Kubernetes API.
        automount_service_account_token=False,
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
        ),
        # The general CPU pool (no taint to tolerate).
        node_selector={POOL_LABEL: "cpu"},
        # After SIGTERM it writes and commits its open batches before it exits.
        termination_grace_period_seconds=60,
        containers=[
            core.ContainerArgs(
                name=DATA_PREP,
                image=dp.image,
                env=env,
                ports=[core.ContainerPortArgs(name="metrics", container_port=METRICS_PORT, protocol="TCP")],
                resources=core.ResourceRequirementsArgs(requests={"cpu": dp.cpu, "memory": memory}, limits={"memory": memory}),
                security_context=core.SecurityContextArgs(
                    allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True, capabilities=core.CapabilitiesArgs(drop=["ALL"])
                ),
                volume_mounts=[core.VolumeMountArgs(name="data", mount_path="/data"), core.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                # /healthz fails once the poll loop has stalled for a minute.
                readiness_probe=probe(10, 3),
                liveness_probe=probe(20, 3),
            )
        ],
        volumes=[
            core.VolumeArgs(name="data", persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(claim_name=dp.output_claim)),
            # Scratch space under the read-only root filesystem (the platform's one emptyDir); no data goes there.
            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi")),
        ],
    )


def lag_hpa_spec(dp: DataPrep) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    hpa = k8s.autoscaling.v2
    return hpa.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=hpa.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=DATA_PREP),
        min_replicas=dp.min_replicas,
        max_replicas=dp.max_replicas,
        metrics=[hpa.MetricSpecArgs(
            type="Pods",
            pods=hpa.PodsMetricSourceArgs(
                metric=hpa.MetricIdentifierArgs(name="kafka_consumer_lag"),
                target=hpa.MetricTargetArgs(type="AverageValue", average_value=str(dp.lag_per_replica)),
            ),
        )],
        # Each change of the group's members rebalances every partition: scale down slowly.
        behavior=hpa.HorizontalPodAutoscalerBehaviorArgs(scale_down=hpa.HPAScalingRulesArgs(stabilization_window_seconds=600)),
    )


def lag_dashboard() -> dict[str, Any]:
    """Consumer lag per team topic and group, and the consumers running: one Grafana dashboard for every team."""
    return monitoring.dashboard("ml-streaming", "ML platform / Streaming", [
        ("Consumer lag by topic and group", "sum by (namespace, topic, consumer_group) (kafka_consumer_lag)", "short", "{{consumer_group}} on {{topic}}"),
        ("Data-prep consumers", f'count by (namespace) (kafka_consumer_lag{{pod=~"{DATA_PREP}-.*"}}) > 0 or '
         f'kube_deployment_status_replicas{{deployment="{DATA_PREP}"}}', "short", "{{namespace}}"),
    ])


def team_policy(cluster_arn: str, topics: Sequence[str], groups: Sequence[str]) -> str:
    """Connect to the cluster; read and write exactly the team's topics; join exactly its consumer groups."""
    statements = [
        {"Sid": "Connect", "Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], "Resource": cluster_arn},
        {
            "Sid": "TeamTopics",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration", "kafka-cluster:ReadData", "kafka-cluster:WriteData"],
            "Resource": sorted(resource_arn(cluster_arn, "topic", t) for t in topics),
        },
    ]
    if groups:
        statements.append({
            "Sid": "TeamGroups",
            "Effect": "Allow",
            "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
            "Resource": sorted(resource_arn(cluster_arn, "group", g) for g in groups),
        })
    return policy_document(statements)


class Streaming(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    bootstrap_brokers: pulumi.Output[str]
    # Per team, its topics' names on the cluster.
    topics: dict[str, list[str]]

    def __init__(self, name: str, args: StreamingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:streaming:Streaming", name, None, opts)
        cfg = args.config
        spec = cfg.streaming
        child = pulumi.ResourceOptions(parent=self)
        msk_name = f"{cfg.cluster_name}-stream"

        security_group = nodes_only(
            name, "brokers", description=f"MSK brokers of {cfg.cluster_name}: SASL/IAM over TLS from the nodes", vpc_id=args.vpc_id,
            node_security_group_id=args.node_security_group_id, port=IAM_PORT, rule_description="Kafka SASL/IAM over TLS from cluster nodes",
            tags=cfg.tags_for(msk_name), rule_tags=cfg.tags_for(f"{msk_name}-from-nodes"), parent=self,
        )

        if spec.mode == "serverless":
            cluster = aws.msk.ServerlessCluster(
                name,
                aws.msk.ServerlessClusterArgs(
                    cluster_name=msk_name,
                    # Serverless accepts IAM access control only; traffic is always TLS.
                    client_authentication=aws.msk.ServerlessClusterClientAuthenticationArgs(
                        sasl=aws.msk.ServerlessClusterClientAuthenticationSaslArgs(iam=aws.msk.ServerlessClusterClientAuthenticationSaslIamArgs(enabled=True))
                    ),
                    vpc_configs=[aws.msk.ServerlessClusterVpcConfigArgs(subnet_ids=list(args.private_subnet_ids), security_group_ids=[security_group.id])],
                    tags=cfg.tags_for(msk_name),
                ),
                opts=child,
            )
            self.bootstrap_brokers = cluster.bootstrap_brokers_sasl_iam
            replication = SERVERLESS_REPLICATION
        else:
            prov = spec.provisioned
            zones = broker_zones(cfg.region, len(args.private_subnet_ids))
            key = encryption_key(
                f"{name}-data",
                alias=f"{msk_name}-data",
                description=f"MSK data at rest of {msk_name}",
                tags=cfg.tags_for(f"{msk_name}-data"),
                parent=self,
                service_use=[via_service("kafka", cfg.region)],
            )
            broker_logs = aws.cloudwatch.LogGroup(
                f"{name}-brokers",
                aws.cloudwatch.LogGroupArgs(
                    name=f"/ml-platform/{cfg.cluster_name}/msk",
                    retention_in_days=prov.log_retention_days,
                    kms_key_id=args.logs_key_arn,
                    tags=cfg.tags_for(f"{msk_name}-logs"),
                ),
                opts=child,
            )
            cluster = aws.msk.Cluster(
                name,
                aws.msk.ClusterArgs(
                    cluster_name=msk_name,
                    kafka_version=prov.kafka_version,
                    number_of_broker_nodes=zones * prov.brokers_per_zone,
                    broker_node_group_info=aws.msk.ClusterBrokerNodeGroupInfoArgs(
                        instance_type=prov.instance_type,
                        client_subnets=list(args.private_subnet_ids)[:zones],
                        security_groups=[security_group.id],
                        storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoArgs(
                            ebs_storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoEbsStorageInfoArgs(volume_size=prov.volume_gib)
                        ),
                    ),
                    client_authentication=aws.msk.ClusterClientAuthenticationArgs(
                        sasl=aws.msk.ClusterClientAuthenticationSaslArgs(iam=True, scram=False), unauthenticated=False
                    ),
                    encryption_info=aws.msk.ClusterEncryptionInfoArgs(
                        encryption_at_rest_kms_key_arn=key.arn,
                        encryption_in_transit=aws.msk.ClusterEncryptionInfoEncryptionInTransitArgs(client_broker="TLS", in_cluster=True),
                    ),
                    logging_info=aws.msk.ClusterLoggingInfoArgs(
                        broker_logs=aws.msk.ClusterLoggingInfoBrokerLogsArgs(
                            cloudwatch_logs=aws.msk.ClusterLoggingInfoBrokerLogsCloudwatchLogsArgs(enabled=True, log_group=broker_logs.name)
                        )
                    ),
                    tags=cfg.tags_for(msk_name),
                ),
                # Autoscaling grows the volumes outside the program: a later `up` must not shrink them back.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["brokerNodeGroupInfo.storageInfo.ebsStorageInfo.volumeSize"]),
            )
            target = aws.appautoscaling.Target(
                f"{name}-storage",
                aws.appautoscaling.TargetArgs(
                    service_namespace="kafka",
                    scalable_dimension="kafka:broker-storage:VolumeSize",
                    resource_id=cluster.arn,
                    min_capacity=1,
                    max_capacity=prov.max_volume_gib,
                    tags=cfg.tags_for(f"{msk_name}-storage"),
                ),
                opts=child,
            )
            aws.appautoscaling.Policy(
                f"{name}-storage",
                aws.appautoscaling.PolicyArgs(
                    policy_type="TargetTrackingScaling",
                    service_namespace=target.service_namespace,
                    scalable_dimension=target.scalable_dimension,
                    resource_id=target.resource_id,
                    target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                        predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                            predefined_metric_type="KafkaBrokerStorageUtilization"
                        ),
                        target_value=prov.storage_target_percent,
                        # MSK cannot shrink broker volumes.
                        disable_scale_in=True,
                    ),
                ),
                opts=child,
            )
            self.bootstrap_brokers = cluster.bootstrap_brokers_sasl_iam
            replication = min(3, zones * prov.brokers_per_zone)
        self.cluster_arn = cluster.arn

        self.topics: dict[str, list[str]] = {}
        for team, streams in sorted(spec.teams.items()):
            topics = [team_topic(team, t.name) for t in streams.topics]
            groups = [team_topic(team, g) for g in streams.consumer_groups]
            topic_resources = []
            for topic in streams.topics:
                topic_resources.append(aws.msk.Topic(
                    f"{name}-{team}-{topic.name}",
                    aws.msk.TopicArgs(
                        cluster_arn=cluster.arn,
                        name=team_topic(team, topic.name),
                        partition_count=topic.partitions,
                        replication_factor=replication,
                        # Only retention: MSK Serverless refuses to set cleanup.policy, whose default (delete) is wanted.
                        configs=json.dumps({"retention.ms": str(topic.retention_hours * 3600 * 1000)}),
                    ),
                    opts=child,
                ))
            role = role_with_policies(
                f"{name}-{team}",
                trust=POD_IDENTITY_TRUST,
                tags=cfg.tags_for(f"{msk_name}-{team}"),
                parent=self,
                policy=cluster.arn.apply(lambda arn, t=topics, g=groups: team_policy(arn, t, g)),
                description=f"Team {team}: its MSK topics and consumer groups only",
            )
            service_account = k8s.core.v1.ServiceAccount(
                f"{name}-{team}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=streams.service_account, namespace=team, labels={"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}
                ),
                automount_service_account_token=False,
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.team_namespaces[team]]),
            )
            association = pod_identity(
                f"{name}-{team}",
                cluster_name=args.cluster_name,
                namespace=team,
                service_account=streams.service_account,
                role=role.role,
                tags=cfg.tags_for(f"{msk_name}-{team}"),
                parent=self,
            )
            self.topics[team] = topics
            k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.team_namespaces[team]])
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{team}-kafka-egress",
                metadata=meta.ObjectMetaArgs(name="allow-kafka-brokers", namespace=team, labels={"app.kubernetes.io/part-of": "ml-platform"}),
                spec=kafka_egress_policy(args.vpc_cidr),
                opts=k8s_opts,
            )
            if streams.data_prep is not None:
                self._data_prep(name, team, streams.data_prep, streams.service_account, [*topic_resources, association, service_account], args)
        if any(s.data_prep for s in spec.teams.values()):
            # Beside the platform's other dashboards; Grafana's sidecar loads ConfigMaps with this label.
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata=meta.ObjectMetaArgs(
                    name="dashboard-ml-streaming",
                    namespace=MONITORING_NAMESPACE,
                    labels={"grafana_dashboard": "1", "app.kubernetes.io/part-of": "ml-platform"},
                ),
                data={"ml-streaming.json": json.dumps(lag_dashboard(), indent=2, sort_keys=True)},
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.monitoring_namespace]),
            )
        self.register_outputs({"clusterArn": self.cluster_arn, "bootstrapBrokers": self.bootstrap_brokers})

    def _data_prep(self, name: str, team: str, dp: DataPrep, service_account: str, kafka: list[pulumi.Resource], args: StreamingArgs) -> None:
        rn = f"{name}-{team}-{DATA_PREP}"
        labels = {"app": DATA_PREP, "app.kubernetes.io/name": DATA_PREP, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}
        selector = {"app": DATA_PREP}
        env = [core.EnvVarArgs(name=k, value=v) for k, v in sorted(data_prep_env(dp, team, args.config.region).items())]
        env.append(core.EnvVarArgs(name="BOOTSTRAP_SERVERS", value=self.bootstrap_brokers))
        opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.team_namespaces[team], *deps])  # noqa: E731
        deployment = k8s.apps.v1.Deployment(
            rn,
            # Its pods wait for a CPU node, the training workload's claim and the brokers: the cluster converges
            # on them, the deploy does not wait (first-deploy.md).
            metadata=meta.ObjectMetaArgs(name=DATA_PREP, namespace=team, labels=labels, annotations={"pulumi.com/skipAwait": "true"}),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=dp.min_replicas,
                selector=meta.LabelSelectorArgs(match_labels=selector),
                # One pod over the replicas while it rolls out: the namespace quota counts it (infra/lib/headroom.py).
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                ),
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(
                        labels={**labels, **KAFKA_CLIENT_LABEL},
                        # The sidecar agent merges the consumer's metrics into its endpoint, which Prometheus scrapes.
                        annotations={"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": "/metrics"},
                    ),
                    spec=data_prep_pod_spec(dp, service_account, env),
                ),
            ),
            # Replicas belong to the autoscaler once created.
            opts=pulumi.ResourceOptions.merge(opts(*kafka, args.general_capacity), pulumi.ResourceOptions(ignore_changes=["spec.replicas"])),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            rn,
            metadata=meta.ObjectMetaArgs(name=DATA_PREP, namespace=team, labels=labels),
            spec=lag_hpa_spec(dp),
            # The lag is read through the adapter's APIService.
            opts=opts(deployment, args.metrics_adapter),
        )
        # One consumer at a time leaves on a drain: each departure rebalances the group.
        k8s.policy.v1.PodDisruptionBudget(
            rn,
            metadata=meta.ObjectMetaArgs(name=DATA_PREP, namespace=team, labels=labels),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels=selector)),
            opts=opts(),
        )
