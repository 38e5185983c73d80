"""Team tenancy: namespaces, quotas, limits, network isolation, RBAC from IAM, platform priority classes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig, TeamConfig
from infra.lib.accelerators import GPU_DEVICE_CLASS, NVIDIA
from infra.lib.conventions import GATEWAY_NAMESPACE, MONITORING_NAMESPACE, ROUTES_LABEL, SERVING_PRIORITY, TRAINING_PRIORITY, team_service_account
from infra.lib.interfaces import TeamInfo
from infra.lib import headroom
from infra.lib.team_access import TEAM_RULES
from infra.lib.network_policies import baseline, in_namespace


def team_group(team: str) -> str:
    return f"ml-team:{team}"


def quota_hard(team: TeamConfig, borrowing_percent: int, gpu_device_class: Optional[str] = None) -> dict[str, str]:
    """The namespace's ceiling: exactly what Kueue may admit for the team (components/scheduling.py). With DRA, GPUs
    are claimed from `gpu_device_class`, which the quota counts as devices of that class."""
    grown = {r: headroom.quantity(r, n) for r, n in headroom.namespace_quota(team, borrowing_percent).items()}
    claimed = {f"{gpu_device_class}.deviceclass.resource.k8s.io/devices": grown[NVIDIA.resource]} if gpu_device_class else {}
    q = team.quota
    return {
        **claimed,
        **{f"requests.{r}": amount for r, amount in grown.items()},
        "limits.memory": grown["memory"],
        "persistentvolumeclaims": str(q.pvcs),
        "requests.storage": f"{q.storage_gib}Gi",
    }


def network_policies(namespace: str, vpc_cidr: str) -> dict[str, dict]:
    """Deny by default; admit the gateway and monitoring; let pods reach DNS, the mesh control plane and HTTPS outside the VPC."""
    return {
        **baseline(),
        "allow-from-gateway": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [in_namespace(GATEWAY_NAMESPACE)]}]},
        "allow-from-monitoring": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [in_namespace(MONITORING_NAMESPACE)]}]},
        "allow-same-namespace": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        },
        "allow-https-outside-vpc": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [vpc_cidr]}}], "ports": [{"protocol": "TCP", "port": 443}]}],
        },
    }


@dataclass(frozen=True)
class TenancyArgs:
    config: PlatformConfig
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider
    depends_on: list[pulumi.Resource]


class Tenancy(pulumi.ComponentResource):
    teams: dict[str, TeamInfo]
    priority_classes: dict[str, k8s.scheduling.v1.PriorityClass]

    def __init__(self, name: str, args: TenancyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:tenancy:Tenancy", name, None, opts)
        cfg = args.config
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        self.priority_classes = {
            SERVING_PRIORITY: k8s.scheduling.v1.PriorityClass(
                f"{name}-{SERVING_PRIORITY}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVING_PRIORITY, labels={"app.kubernetes.io/part-of": "ml-platform"}),
                value=100000,
                preemption_policy="PreemptLowerPriority",
                global_default=False,
                description="Online model serving: preempts batch training when capacity is short.",
                opts=k8s_opts(),
            ),
            TRAINING_PRIORITY: k8s.scheduling.v1.PriorityClass(
                f"{name}-{TRAINING_PRIORITY}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=TRAINING_PRIORITY, labels={"app.kubernetes.io/part-of": "ml-platform"}),
                value=10000,
                preemption_policy="Never",
                global_default=False,
                description="Batch training: never preempts, may be preempted by serving.",
                opts=k8s_opts(),
            ),
        }
        self.teams = {team.name: self._team(name, team, args, k8s_opts) for team in cfg.teams}
        self.register_outputs({"teams": sorted(self.teams)})

    def _team(self, name: str, team: TeamConfig, args: TenancyArgs, k8s_opts) -> TeamInfo:
        cfg = args.config
        prefix = f"{name}-{team.name}"
        labels = {"app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": team.name}
        namespace = k8s.core.v1.Namespace(
            prefix,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=team.name,
                labels={
                    **labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "istio-injection": "enabled",
                    ROUTES_LABEL: "true",
                },
            ),
            opts=k8s_opts(),
        )
        in_ns = lambda n: k8s.meta.v1.ObjectMetaArgs(name=n, namespace=namespace.metadata.name, labels=labels)  # noqa: E731
        guardrails: list[pulumi.Resource] = [
            k8s.core.v1.ResourceQuota(
                f"{prefix}-quota",
                metadata=in_ns("team-quota"),
                spec=k8s.core.v1.ResourceQuotaSpecArgs(
                    hard=quota_hard(team, cfg.scheduling.borrowing_limit_percent, GPU_DEVICE_CLASS if cfg.accelerators.gpu_operator.dra.enabled else None)
                ),
                opts=k8s_opts(),
            ),
            k8s.core.v1.LimitRange(
                f"{prefix}-limits",
                metadata=in_ns("container-defaults"),
                spec=k8s.core.v1.LimitRangeSpecArgs(
                    limits=[
                        k8s.core.v1.LimitRangeItemArgs(
                            type="Container",
                            default_request={"cpu": team.container_defaults.cpu, "memory": f"{team.container_defaults.memory_mib}Mi"},
                            # Memory limit equals the request: no overcommit, no surprise OOM kills of neighbours.
                            default={"memory": f"{team.container_defaults.memory_mib}Mi"},
                        )
                    ]
                ),
                opts=k8s_opts(),
            ),
        ]
        for policy_name, spec in network_policies(team.name, cfg.network.cidr).items():
            guardrails.append(
                k8s.networking.v1.NetworkPolicy(f"{prefix}-{policy_name}", metadata=in_ns(policy_name), spec=spec, opts=k8s_opts())
            )
        role = k8s.rbac.v1.Role(
            f"{prefix}-developer",
            metadata=in_ns("team-developer"),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=g, resources=r, verbs=v) for g, r, v in TEAM_RULES],
            opts=k8s_opts(),
        )
        k8s.rbac.v1.RoleBinding(
            f"{prefix}-developer",
            metadata=in_ns("team-developer"),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="team-developer"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="Group", name=team_group(team.name), api_group="rbac.authorization.k8s.io")],
            opts=k8s_opts(role),
        )
        aws.eks.AccessEntry(
            prefix,
            aws.eks.AccessEntryArgs(
                cluster_name=args.cluster_name,
                principal_arn=team.iam_role_arn,
                type="STANDARD",
                kubernetes_groups=[team_group(team.name)],
                tags=cfg.tags_for(f"{cfg.cluster_name}-team-{team.name}"),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        service_account = team_service_account(team.name)
        k8s.core.v1.ServiceAccount(
            f"{prefix}-workloads",
            metadata=in_ns(service_account),
            automount_service_account_token=False,
            opts=k8s_opts(),
        )
        return TeamInfo(team.name, team.name, service_account, team.iam_role_arn, namespace, guardrails)
