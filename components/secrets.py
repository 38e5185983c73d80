"""Secrets Manager secrets inside the cluster: the External Secrets Operator mirrors the secrets AWS manages (the
database's rotated master password) into Kubernetes Secrets, so no credential ever passes through the program."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib import helm, timing
from infra.lib.conventions import DATABASE_CLIENT_LABEL, DATABASE_SECRET_STORE
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies

REPOSITORY = "https://charts.external-secrets.io"
NAMESPACE = "external-secrets"
SERVICE_ACCOUNT = "external-secrets"
# The operator's CRDs at the pinned release (schemas/SOURCES.yaml): the chart at the tag carries none.
CRD_BUNDLE = "schemas/crds/external-secrets/bundle.yaml"


@dataclass(frozen=True)
class SecretSyncArgs:
    config: PlatformConfig
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    # The Secrets Manager secrets the operator may read, and the keys that encrypt them.
    secret_arns: Sequence[pulumi.Input[str]]
    key_arns: Sequence[pulumi.Input[str]]
    # Its pods run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource
    # Installs the ServiceMonitor CRD the chart's monitors need.
    monitoring_release: pulumi.Resource


def values() -> dict[str, Any]:
    probes = {"enabled": True}
    return {
        # The program creates the CRDs from the vendored bundle (the chart at the tag carries none).
        "installCRDs": False,
        "serviceAccount": {"name": SERVICE_ACCOUNT},
        "resources": helm.resources("50m", "128Mi", chart_limits_cpu=False),
        "livenessProbe": probes,
        "readinessProbe": probes,
        "serviceMonitor": {"enabled": True},
        "webhook": {"resources": helm.resources("20m", "64Mi", chart_limits_cpu=False)},
        "certController": {"resources": helm.resources("20m", "96Mi", chart_limits_cpu=False)},
        # Nothing in the platform pushes secrets or generates them: fewer reconcilers, less RBAC exercised.
        "processPushSecret": False,
        "processClusterPushSecret": False,
        "processClusterGenerator": False,
    }


def reader_policy(secret_arns: Sequence[str], key_arns: Sequence[str], region: str) -> str:
    return policy_document([
        {"Sid": "ReadPlatformSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], "Resource": sorted(secret_arns)},
        {
            "Sid": "DecryptThem",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": sorted(key_arns),
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
        },
    ])


class SecretSync(pulumi.ComponentResource):
    store_name: str = DATABASE_SECRET_STORE
    store: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: SecretSyncArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:secrets:SecretSync", name, None, opts)
        cfg = args.config
        spec = cfg.database.secret_sync

        def k8s_opts(*depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(depends_on))

        # Applied from the vendored bundle by the provider (a path relative to the project, where the engine runs the
        # program): 25 large CRDs as one resource, each object still created, awaited and deleted on its own.
        crds = k8s.yaml.v2.ConfigFile(f"{name}-crds", file=CRD_BUNDLE, opts=k8s_opts())
        namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted", "app.kubernetes.io/part-of": "ml-platform"}
            ),
            opts=k8s_opts(),
        )
        role = role_with_policies(
            name,
            trust=POD_IDENTITY_TRUST,
            tags=cfg.tags_for(f"{cfg.cluster_name}-external-secrets"),
            parent=self,
            policy=pulumi.Output.all(list(args.secret_arns), list(args.key_arns)).apply(lambda a: reader_policy(a[0], a[1], cfg.region)),
            description="External Secrets Operator: reads the platform's own Secrets Manager secrets only",
        )
        association = pod_identity(
            name, cluster_name=args.cluster_name, namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, role=role.role,
            tags=cfg.tags_for(f"{cfg.cluster_name}-external-secrets"), parent=self,
        )
        # The association exists before the pods start: the Pod Identity agent hands credentials only to pods
        # created after it.
        operator = helm.release(
            name,
            name="external-secrets",
            chart="external-secrets",
            repository=REPOSITORY,
            version=spec.chart.version,
            namespace=NAMESPACE,
            values=values(),
            opts=k8s_opts(namespace, association, *role.attachments, crds, args.general_capacity, args.monitoring_release),
            # Its pods wait for Karpenter to launch a cpu node.
            timeout=timing.HELM_ON_NEW_NODES,
        )
        # Only namespaces labelled as database clients may use the store: a team namespace cannot read the password.
        self.store = k8s.apiextensions.CustomResource(
            f"{name}-store",
            api_version="external-secrets.io/v1",
            kind="ClusterSecretStore",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DATABASE_SECRET_STORE, labels={"app.kubernetes.io/part-of": "ml-platform"}),
            spec={
                "provider": {"aws": {"service": "SecretsManager", "region": cfg.region}},
                "conditions": [{"namespaceSelector": {"matchLabels": {DATABASE_CLIENT_LABEL: "true"}}}],
            },
            # The operator's webhook validates stores: it must be serving first.
            opts=k8s_opts(operator),
        )
        self.register_outputs({"store": DATABASE_SECRET_STORE})
