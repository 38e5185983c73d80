"""The ML layer's database: one Aurora MySQL Serverless v2 cluster in the private subnets, reachable from the nodes
only, encrypted with its own key, its master password generated, kept and rotated by RDS in Secrets Manager."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.config import PlatformConfig
from infra.lib.kms import encryption_key, via_service
from infra.lib.security_groups import nodes_only

MYSQL_PORT = 3306
# The engine logs worth keeping: errors, and queries slower than the parameter group's long_query_time.
LOG_EXPORTS = ("error", "slowquery")
MASTER_USERNAME = "mlplatform"


@dataclass(frozen=True)
class DatabaseArgs:
    config: PlatformConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    # The EKS cluster security group every node carries: the only source allowed to connect.
    node_security_group_id: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]


class Database(pulumi.ComponentResource):
    host: pulumi.Output[str]
    port: int = MYSQL_PORT
    master_secret_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    instances: list[aws.rds.ClusterInstance]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:database:Database", name, None, opts)
        cfg = args.config
        db = cfg.database
        child = pulumi.ResourceOptions(parent=self)
        identifier = f"{cfg.cluster_name}-ml"
        prod = cfg.environment == "prod"

        key = encryption_key(
            f"{name}-data",
            alias=f"{identifier}-data",
            description=f"Aurora storage, snapshots and master secret of {identifier}",
            tags=cfg.tags_for(f"{identifier}-data"),
            parent=self,
            # RDS encrypts the storage, Secrets Manager the master secret; both on the caller's behalf.
            service_use=[via_service("rds", cfg.region), via_service("secretsmanager", cfg.region)],
            protect=prod,
        )
        subnets = aws.rds.SubnetGroup(
            name,
            aws.rds.SubnetGroupArgs(name=identifier, description=f"Private subnets of {cfg.cluster_name}", subnet_ids=list(args.private_subnet_ids), tags=cfg.tags_for(identifier)),
            opts=child,
        )
        security_group = nodes_only(
            name, "clients", description=f"Aurora MySQL of {cfg.cluster_name}: MySQL from the nodes", vpc_id=args.vpc_id,
            node_security_group_id=args.node_security_group_id, port=MYSQL_PORT, rule_description="MySQL from cluster nodes",
            tags=cfg.tags_for(identifier), rule_tags=cfg.tags_for(f"{identifier}-from-nodes"), parent=self,
        )
        # Created first, encrypted and with a retention: RDS would otherwise create them plain and keep them forever.
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-{log}",
                aws.cloudwatch.LogGroupArgs(
                    name=f"/aws/rds/cluster/{identifier}/{log}",
                    retention_in_days=cfg.logging.retention_days,
                    kms_key_id=args.logs_key_arn,
                    tags=cfg.tags_for(f"{identifier}-{log}"),
                ),
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
        # A final snapshot outlives the stack: a name of its own per cluster's life, or the next destroy after a
        # re-create would fail on the snapshot the last one left.
        final_snapshot = None if db.skip_final_snapshot else random.RandomId(
            f"{name}-final-snapshot", random.RandomIdArgs(byte_length=4), opts=pulumi.ResourceOptions(parent=self),
        )
        cluster = aws.rds.Cluster(
            name,
            aws.rds.ClusterArgs(
                cluster_identifier=identifier,
                engine="aurora-mysql",
                engine_mode="provisioned",
                engine_version=db.engine_version,
                master_username=MASTER_USERNAME,
                # RDS generates the password and keeps it in Secrets Manager, rotating it: it is never in state.
                manage_master_user_password=True,
                master_user_secret_kms_key_id=key.key_id,
                storage_encrypted=True,
                kms_key_id=key.arn,
                db_subnet_group_name=subnets.name,
                vpc_security_group_ids=[security_group.id],
                serverlessv2_scaling_configuration=aws.rds.ClusterServerlessv2ScalingConfigurationArgs(
                    min_capacity=db.min_capacity,
                    max_capacity=db.max_capacity,
                    # At 0 ACUs the cluster pauses after five idle minutes (RDS' own default, stated here).
                    seconds_until_auto_pause=300 if db.min_capacity == 0 else None,
                ),
                backup_retention_period=db.backup_retention_days,
                copy_tags_to_snapshot=True,
                deletion_protection=db.deletion_protection,
                skip_final_snapshot=db.skip_final_snapshot,
                final_snapshot_identifier=None if db.skip_final_snapshot else final_snapshot.hex.apply(lambda h: f"{identifier}-final-{h}"),
                iam_database_authentication_enabled=True,
                enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
                tags=cfg.tags_for(identifier),
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=prod, depends_on=log_groups),
        )
        self.instances = [
            aws.rds.ClusterInstance(
                f"{name}-{i}",
                aws.rds.ClusterInstanceArgs(
                    identifier=f"{identifier}-{i}",
                    cluster_identifier=cluster.id,
                    instance_class="db.serverless",
                    engine=cluster.engine,
                    engine_version=cluster.engine_version,
                    db_subnet_group_name=subnets.name,
                    publicly_accessible=False,
                    # An LTS release: AWS advises against automatic minor upgrades, which may leave the LTS line.
                    auto_minor_version_upgrade=False,
                    # Database Insights' standard mode: seven days of load history, free, encrypted with the key.
                    performance_insights_enabled=True,
                    performance_insights_kms_key_id=key.arn,
                    performance_insights_retention_period=7,
                    tags=cfg.tags_for(f"{identifier}-{i}"),
                ),
                opts=child,
            )
            for i in range(db.instances)
        ]
        self.host = cluster.endpoint
        # With manage_master_user_password RDS always reports the one secret it keeps: no fallback to an empty ARN.
        self.master_secret_arn = cluster.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn)
        self.key_arn = key.arn
        self.register_outputs({"host": self.host, "masterSecretArn": self.master_secret_arn})
