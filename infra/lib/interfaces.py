"""Typed outputs one component hands another through the wiring (infra/platform.py)."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class TeamInfo:
    name: str
    namespace: str
    service_account: str
    iam_role_arn: str
    namespace_resource: k8s.core.v1.Namespace
    guardrails: list[pulumi.Resource]


@dataclass(frozen=True)
class GatewayInfo:
    """The platform's shared Gateway, as what routes through it needs it."""
    parent_ref: dict[str, str]  # an HTTPRoute's parentRefs entry
    hosts: list[str]
    url: pulumi.Output[str]
    selector: dict[str, str]  # its pods' labels
    principal: str  # its proxies' workload identity


@dataclass(frozen=True)
class DatabaseInfo:
    """The platform's Aurora MySQL cluster as its consumers need it; each consumer keeps its own database on it."""
    host: pulumi.Output[str]
    port: int
    # The ClusterSecretStore that mirrors the RDS-managed master secret into labelled namespaces.
    secret_store: str
    master_secret_arn: pulumi.Output[str]
    # Depend on these before creating a credentials ExternalSecret (the store, its CRDs and the instances).
    ready: list[pulumi.Resource]
