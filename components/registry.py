"""Model registry: an MLflow tracking server and model registry per team, in the platform's `mlflow` namespace.

Per team: its own server (Deployment, Service), its own database on the platform's Aurora cluster (`mlflow_<team>`),
its own artifact prefix in one S3 bucket (`s3://<bucket>/<team>/`) reached through its own Pod Identity role, and an
Istio AuthorizationPolicy that admits only the team's namespace. The server proxies artifacts (`--serve-artifacts`):
clients upload and download through it, so only the server holds S3 rights and no team pod needs AWS credentials.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib.accelerators import POOL_LABEL
from infra.lib.buckets import private_encrypted
from infra.lib.interfaces import DatabaseInfo
from infra.lib.conventions import DATABASE_CLIENT_LABEL, REGISTRY_NAMESPACE, REGISTRY_PORT, registry_service, registry_url
from infra.lib.database import credentials_secret
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service
from infra.lib.network_policies import POD_IDENTITY_AGENT_EGRESS, baseline

core, meta = k8s.core.v1, k8s.meta.v1
RUN_AS = 10001
# The EKS Pod Identity agent on every node (link-local): the servers' AWS credentials come from it.
# The Kubernetes Secret (username, password) kept in sync with the Aurora credentials.
DATABASE_SECRET = "mlflow-database"
# Readiness and first schema migration depend on the database and its synced credentials, which converge after
# the graph: Pulumi creates these and moves on (docs/operators/first-deploy.md).
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def database_name(team: str) -> str:
    """MySQL names take no hyphen unquoted; team names are DNS labels."""
    return f"mlflow_{team.replace('-', '_')}"


def allowed_hosts(team: str) -> str:
    """Host headers the server accepts (MLflow's DNS-rebinding guard): its Service names, and localhost for probes."""
    service = registry_service(team)
    names = [service, f"{service}.{REGISTRY_NAMESPACE}", f"{service}.{REGISTRY_NAMESPACE}.svc", f"{service}.{REGISTRY_NAMESPACE}.svc.cluster.local", "localhost"]
    return ",".join(h for n in names for h in (n, f"{n}:{REGISTRY_PORT}"))


def artifact_policy(bucket_arn: str, key_arn: str, team: str, region: str) -> str:
    """Read, write and delete objects under the team's prefix only; list only that prefix; the bucket key through S3."""
    return policy_document([
        {
            "Sid": "ListTeamPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{team}/*", team]}},
        },
        {
            "Sid": "TeamObjects",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": f"{bucket_arn}/{team}/*",
        },
        {
            "Sid": "BucketKeyThroughS3",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    ])


def server_args(team: str, bucket: pulumi.Input[str], workers: int) -> list[pulumi.Input[str]]:
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", str(REGISTRY_PORT),
        "--workers", str(workers),
        # Expanded by the kubelet from the container's environment: the password never appears in the spec.
        "--backend-store-uri", "$(MLFLOW_BACKEND_STORE_URI)",
        "--serve-artifacts",
        "--artifacts-destination", pulumi.Output.concat("s3://", bucket, "/", team),
        "--allowed-hosts", allowed_hosts(team),
    ]


def database_env(host: pulumi.Input[str], port: int, secret: str, team: str) -> list[core.EnvVarArgs]:
    """The credentials from the synced secret, then the URI built from them (kubelet $(VAR) expansion)."""
    return [
        core.EnvVarArgs(name="DB_HOST", value=host),
        core.EnvVarArgs(name="DB_USERNAME", value_from=core.EnvVarSourceArgs(secret_key_ref=core.SecretKeySelectorArgs(name=secret, key="username"))),
        core.EnvVarArgs(name="DB_PASSWORD", value_from=core.EnvVarSourceArgs(secret_key_ref=core.SecretKeySelectorArgs(name=secret, key="password"))),
        core.EnvVarArgs(name="DB_NAME", value=database_name(team)),
        core.EnvVarArgs(name="MLFLOW_BACKEND_STORE_URI", value=f"mysql+pymysql://$(DB_USERNAME):$(DB_PASSWORD)@$(DB_HOST):{port}/$(DB_NAME)"),
    ]


def create_database(port: int) -> str:
    """MLflow creates its tables (and migrates them) at start, not the database: this creates it first, idempotently."""
    return (
        "import os, pymysql\n"
        f"c = pymysql.connect(host=os.environ['DB_HOST'], port={port}, user=os.environ['DB_USERNAME'], password=os.environ['DB_PASSWORD'], connect_timeout=10)\n"
        "c.cursor().execute('CREATE DATABASE IF NOT EXISTS `%s`' % os.environ['DB_NAME'])\n"
        "c.close()\n"
    )


def restricted() -> core.SecurityContextArgs:
    return core.SecurityContextArgs(
        allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True, capabilities=core.CapabilitiesArgs(drop=["ALL"])
    )


def probe(period: int, failures: int) -> core.ProbeArgs:
    # Host: localhost, one of the allowed hosts (a probe's default Host is the pod IP, which the server refuses).
    return core.ProbeArgs(
        http_get=core.HTTPGetActionArgs(path="/health", port="http", http_headers=[core.HTTPHeaderArgs(name="Host", value="localhost")]),
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=5,
    )


def network_policies(vpc_cidr: str, database_port: int) -> dict[str, dict]:
    """The registry namespace: deny by default; team namespaces may reach the servers' port (the mesh decides which
    server); the servers reach DNS, the mesh control plane, the Pod Identity agent, Aurora in the VPC and S3."""
    return {
        **baseline(),
        "allow-from-teams": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ml-platform.io/team", "operator": "Exists"}]}}], "ports": [{"protocol": "TCP", "port": REGISTRY_PORT}]}
            ],
        },
        "allow-pod-identity-agent": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [POD_IDENTITY_AGENT_EGRESS],
        },
        "allow-database": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [{"protocol": "TCP", "port": database_port}]}],
        },
        # S3 through the VPC's gateway endpoint: public S3 addresses, outside the VPC.
        "allow-https-outside-vpc": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [vpc_cidr]}}], "ports": [{"protocol": "TCP", "port": 443}]}],
        },
    }


def team_egress_policy(team: str) -> dict:
    """In the team's namespace: its pods may reach its own registry server (its deny-by-default admits no other namespace)."""
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": REGISTRY_NAMESPACE}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/instance": registry_service(team)}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": REGISTRY_PORT}],
            }
        ],
    }


def authorization_policy_spec(team: str) -> dict:
    """Only workloads of the team's namespace (mTLS identities) reach the team's server; everything else is denied."""
    return {
        "selector": {"matchLabels": {"app.kubernetes.io/instance": registry_service(team)}},
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"namespaces": [team]}}], "to": [{"operation": {"ports": [str(REGISTRY_PORT)]}}]}],
    }


@dataclass(frozen=True)
class RegistryArgs:
    config: PlatformConfig
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    team_namespaces: dict[str, pulumi.Resource]
    # Sidecar injection and the Istio CRDs (AuthorizationPolicy).
    istiod: pulumi.Resource
    # The servers run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource
    # The Aurora cluster (backend store, one database per team) and the secret store its credentials come through.
    database: DatabaseInfo


class Registry(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    urls: dict[str, str]  # by team: MLFLOW_TRACKING_URI inside the cluster

    def __init__(self, name: str, args: RegistryArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ml-platform:registry:Registry", name, None, opts)
        cfg, spec = args.config, args.config.registry
        teams = sorted(t.name for t in cfg.teams)
        base = f"{cfg.cluster_name}-mlflow"

        key = encryption_key(
            f"{name}-artifacts",
            alias=f"{base}-artifacts",
            description=f"MLflow artifacts of {cfg.cluster_name}",
            tags=cfg.tags_for(f"{base}-artifacts"),
            parent=self,
            service_use=[via_service("s3", cfg.region)],
            protect=spec.protect,
        )
        # Destroy works by construction: an unprotected bucket is emptied (every version) and deleted with the stack.
        bucket = aws.s3.Bucket(
            f"{name}-artifacts",
            aws.s3.BucketArgs(bucket_prefix=f"{base}-", force_destroy=not spec.protect, tags=cfg.tags_for(f"{base}-artifacts")),
            opts=pulumi.ResourceOptions(parent=self, protect=spec.protect),
        )
        private_encrypted(f"{name}-artifacts", bucket, key.arn, aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-old-versions", status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=spec.noncurrent_version_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7),
        ), parent=self)
        self.bucket_name = bucket.bucket

        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps))  # noqa: E731
        namespace = core.Namespace(
            f"{name}-namespace",
            metadata=meta.ObjectMetaArgs(
                name=REGISTRY_NAMESPACE,
                labels={
                    "app.kubernetes.io/part-of": "ml-platform",
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "istio-injection": "enabled",
                    # The secret store mirrors the database credentials into labelled namespaces only.
                    DATABASE_CLIENT_LABEL: "true",
                },
            ),
            opts=k8s_opts(),
        )
        guardrails = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy}",
                metadata=meta.ObjectMetaArgs(name=policy, namespace=REGISTRY_NAMESPACE, labels={"app.kubernetes.io/part-of": "ml-platform"}),
                spec=body,
                opts=k8s_opts(namespace),
            )
            for policy, body in network_policies(cfg.network.cidr, args.database.port).items()
        ]

        # One synced copy of the credentials in the platform's namespace, never in a team's.
        credentials = credentials_secret(
            DATABASE_SECRET, REGISTRY_NAMESPACE, args.database, cfg.database.secret_sync.refresh_interval, k8s_opts(namespace)
        )
        self.urls = {}
        for team in teams:
            self._team(name, team, bucket, key, namespace, [*guardrails, credentials, *args.database.ready], args)
            self.urls[team] = registry_url(team)
        self.register_outputs({"bucket": self.bucket_name, "urls": self.urls})

    def _team(self, name: str, team: str, bucket: aws.s3.Bucket, key: aws.kms.Key, namespace: pulumi.Resource, before: list, args: RegistryArgs) -> None:
        cfg, spec = args.config, args.config.registry
        service = registry_service(team)
        rn = f"{name}-{team}"
        labels = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": service, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}
        in_ns = lambda annotations=None: meta.ObjectMetaArgs(name=service, namespace=REGISTRY_NAMESPACE, labels=labels, annotations=annotations)  # noqa: E731
        opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace, *deps])  # noqa: E731

        role = role_with_policies(
            rn,
            trust=POD_IDENTITY_TRUST,
            tags=cfg.tags_for(f"{cfg.cluster_name}-mlflow-{team}"),
            parent=self,
            policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda v, t=team: artifact_policy(v[0], v[1], t, cfg.region)),
            description=f"MLflow server of team {team}: its artifact prefix only",
        )
        account = core.ServiceAccount(rn, metadata=in_ns(), automount_service_account_token=False, opts=opts())
        identity = pod_identity(
            rn,
            cluster_name=args.cluster_name,
            namespace=REGISTRY_NAMESPACE,
            service_account=service,
            role=role.role,
            tags=cfg.tags_for(f"{cfg.cluster_name}-mlflow-{team}"),
            parent=self,
        )
        env = database_env(args.database.host, args.database.port, DATABASE_SECRET, team)
        resources = core.ResourceRequirementsArgs(
            requests={"cpu": spec.resources.cpu, "memory": f"{int(spec.resources.memory_gib * 1024)}Mi"},
            limits={"memory": f"{int(spec.resources.memory_gib * 1024)}Mi"},
        )
        tmp = core.VolumeMountArgs(name="tmp", mount_path="/tmp")
        k8s.apps.v1.Deployment(
            rn,
            metadata=in_ns(SKIP_AWAIT),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=spec.replicas,
                selector=meta.LabelSelectorArgs(match_labels={"app.kubernetes.io/instance": service}),
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels=labels),
                    spec=core.PodSpecArgs(
                        service_account_name=service,
                        automount_service_account_token=False,
                        security_context=core.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, fs_group=RUN_AS, seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
                        ),
                        node_selector={POOL_LABEL: "cpu"},
                        init_containers=[
                            core.ContainerArgs(
                                name="create-database",
                                image=spec.image,
                                command=["python", "-c", create_database(args.database.port)],
                                env=env,
                                resources=core.ResourceRequirementsArgs(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "256Mi"}),
                                security_context=restricted(),
                                volume_mounts=[tmp],
                            )
                        ],
                        containers=[
                            core.ContainerArgs(
                                name="mlflow",
                                image=spec.image,
                                command=["mlflow"],
                                args=server_args(team, bucket.bucket, spec.workers),
                                working_dir="/tmp",
                                env=[*env, core.EnvVarArgs(name="HOME", value="/tmp"), core.EnvVarArgs(name="AWS_REGION", value=cfg.region)],
                                ports=[core.ContainerPortArgs(name="http", container_port=REGISTRY_PORT, protocol="TCP")],
                                resources=resources,
                                security_context=restricted(),
                                volume_mounts=[tmp],
                                # The first start migrates an empty schema: minutes, not seconds.
                                startup_probe=probe(10, 30),
                                readiness_probe=probe(10, 3),
                                liveness_probe=probe(20, 3),
                            )
                        ],
                        volumes=[core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi"))],
                        topology_spread_constraints=[
                            core.TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="topology.kubernetes.io/zone",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=meta.LabelSelectorArgs(match_labels={"app.kubernetes.io/instance": service}),
                            )
                        ],
                    ),
                ),
            ),
            opts=opts(account, identity, *role.attachments, *before, args.istiod, args.general_capacity),
        )
        core.Service(
            f"{rn}-svc",
            metadata=in_ns(SKIP_AWAIT),
            spec=core.ServiceSpecArgs(
                type="ClusterIP",
                selector={"app.kubernetes.io/instance": service},
                ports=[core.ServicePortArgs(name="http", port=REGISTRY_PORT, target_port="http", protocol="TCP")],
            ),
            opts=opts(),
        )
        if spec.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                rn,
                metadata=in_ns(),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels={"app.kubernetes.io/instance": service})),
                opts=opts(),
            )
        k8s.apiextensions.CustomResource(
            rn,
            api_version="security.istio.io/v1",
            kind="AuthorizationPolicy",
            metadata=in_ns(),
            spec=authorization_policy_spec(team),
            opts=opts(args.istiod),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{rn}-egress",
            metadata=meta.ObjectMetaArgs(name="allow-model-registry", namespace=team, labels={"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team}),
            spec=team_egress_policy(team),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.team_namespaces[team]]),
        )
