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
