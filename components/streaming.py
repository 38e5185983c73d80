"""Streaming ingestion: an Amazon MSK cluster in the private subnets, reachable from the nodes only, with IAM
access control and TLS; per team, its topics and a Pod Identity role granting exactly those topics and groups."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.config.streaming import broker_zones
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service

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


def team_topic(team: str, topic: str) -> str:
    """A team's topic on the shared cluster: prefixed with the team, so two teams never collide."""
    return f"{team}.{topic}"


def resource_arn(cluster_arn: str, kind: str, name: str) -> str:
    """Topic and group ARNs share the cluster's name and UUID: arn:...:cluster/<name>/<uuid> -> arn:...:<kind>/<name>/<uuid>/<name>."""
    prefix, _, rest = cluster_arn.partition(":cluster/")
    return f"{prefix}:{kind}/{rest}/{name}"


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

    def __init__(self, name: str, args: StreamingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:streaming:Streaming", name, None, opts)
        cfg = args.config
        spec = cfg.streaming
        child = pulumi.ResourceOptions(parent=self)
        msk_name = f"{cfg.cluster_name}-stream"

        # No inline rule naming the EKS security group: the cluster would wait for the control plane; a separate
        # rule lets MSK's long creation run beside it.
        security_group = aws.ec2.SecurityGroup(
            f"{name}-brokers",
            aws.ec2.SecurityGroupArgs(description=f"MSK brokers of {cfg.cluster_name}: SASL/IAM over TLS from the nodes", vpc_id=args.vpc_id, egress=[], tags=cfg.tags_for(msk_name)),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-nodes",
            aws.vpc.SecurityGroupIngressRuleArgs(
                security_group_id=security_group.id,
                referenced_security_group_id=args.node_security_group_id,
                ip_protocol="tcp",
                from_port=IAM_PORT,
                to_port=IAM_PORT,
                description="Kafka SASL/IAM over TLS from cluster nodes",
                tags=cfg.tags_for(f"{msk_name}-from-nodes"),
            ),
            opts=child,
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

        for team, streams in sorted(spec.teams.items()):
            topics = [team_topic(team, t.name) for t in streams.topics]
            groups = [team_topic(team, g) for g in streams.consumer_groups]
            for topic in streams.topics:
                aws.msk.Topic(
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
                )
            role = role_with_policies(
                f"{name}-{team}",
                trust=POD_IDENTITY_TRUST,
                tags=cfg.tags_for(f"{msk_name}-{team}"),
                parent=self,
                policy=cluster.arn.apply(lambda arn, t=topics, g=groups: team_policy(arn, t, g)),
                description=f"Team {team}: its MSK topics and consumer groups only",
            )
            k8s.core.v1.ServiceAccount(
                f"{name}-{team}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=streams.service_account, namespace=team, labels={"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}
                ),
                automount_service_account_token=False,
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.team_namespaces[team]]),
            )
            pod_identity(
                f"{name}-{team}",
                cluster_name=args.cluster_name,
                namespace=team,
                service_account=streams.service_account,
                role=role.role,
                tags=cfg.tags_for(f"{msk_name}-{team}"),
                parent=self,
            )
        self.register_outputs({"clusterArn": self.cluster_arn, "bootstrapBrokers": self.bootstrap_brokers})
