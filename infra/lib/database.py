"""The platform database's credentials inside the cluster: a Kubernetes Secret kept in step with Secrets Manager."""
from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.lib.interfaces import DatabaseInfo

EXTERNAL_SECRETS_API = "external-secrets.io/v1"


def credentials_secret(name: str, namespace: str, info: DatabaseInfo, refresh_interval: str, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """An ExternalSecret keeping Secret `name` in `namespace` with keys `username` and `password` from the
    RDS-managed master secret. The password never passes through the program: the operator reads it in the
    cluster. The namespace must carry conventions.DATABASE_CLIENT_LABEL (the store admits no other)."""
    keys = ("username", "password")
    return k8s.apiextensions.CustomResource(
        f"{namespace}-{name}",
        api_version=EXTERNAL_SECRETS_API,
        kind="ExternalSecret",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "ml-platform"}),
        spec={
            "refreshInterval": refresh_interval,
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": info.secret_store},
            "target": {"name": name, "creationPolicy": "Owner"},
            "data": [{"secretKey": k, "remoteRef": {"key": info.master_secret_arn, "property": k}} for k in keys],
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=info.ready)),
    )
