"""Delivery for app teams: Argo CD (the EKS Argo CD capability, or the upstream chart on the general CPU pool) and, per
team, an AppProject fenced to the team's namespace and kinds, and an ApplicationSet that follows the team's repository
with the Kustomize overlay of this environment."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.config.gitops import GitOpsConfig, TeamDelivery
from infra.lib import account, helm, monitoring, timing
from infra.lib.argocd_health import IGNORE_DIFFERENCES, argocd_cm
from infra.lib.conventions import DASHBOARD_LABEL, MONITORING_NAMESPACE, TEAM_LABEL
from infra.lib.iam import service_trust_policy
from infra.lib.monitoring import alert_rule
from infra.lib.team_access import creatable_kinds

NAMESPACE = "argocd"
RELEASE = "argo-cd"
REPOSITORY = "https://argoproj.github.io/argo-helm"
CAPABILITY = "argocd"
# The chart path's Argo CD reaches its own cluster through the in-cluster service account.
IN_CLUSTER = "https://kubernetes.default.svc"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
# The chart's metrics Services by component: (app.kubernetes.io/name, port), as argo-cd 10.1.1 renders them.
METRICS = {
    "application-controller": ("argocd-metrics", "http-metrics"),
    "applicationset-controller": ("argocd-metrics", "http-metrics"),
    "repo-server": ("argocd-repo-server-metrics", "http-metrics"),
    "server": ("argocd-server-metrics", "http-metrics"),
}
# Namespaced access for the capability role in the team namespaces; the AppProject narrows it to the team's kinds.
NAMESPACE_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy"


def project_spec(team: str, spec: TeamDelivery, server: str) -> dict[str, Any]:
    """The team's AppProject: its repository, its own namespace on this cluster, the kinds its Role may create,
    nothing cluster-scoped, and a role for its groups limited to the project's applications."""
    namespaces = spec.namespaces or [team]
    return {
        "description": f"Applications of team {team}: its repository, its namespace, what its Role may create",
        "sourceRepos": [spec.repo_url],
        "destinations": [{"server": server, "namespace": ns} for ns in namespaces],
        # Argo CD refuses every cluster-scoped kind a project does not whitelist: none here.
        "clusterResourceWhitelist": [],
        "namespaceResourceWhitelist": [{"group": g, "kind": k} for g, k in creatable_kinds()],
        "orphanedResources": {"warn": True},
        "roles": [
            {
                "name": "developer",
                "description": f"Team {team}: sync, refresh and inspect the project's applications",
                "policies": [
                    f"p, proj:{team}:developer, applications, get, {team}/*, allow",
                    f"p, proj:{team}:developer, applications, sync, {team}/*, allow",
                    f"p, proj:{team}:developer, applications, action/*, {team}/*, allow",
                    f"p, proj:{team}:developer, logs, get, {team}/*, allow",
                ],
                "groups": list(spec.groups),
            }
        ],
    }


def application_set_spec(team: str, spec: TeamDelivery, environment: str, server: str) -> dict[str, Any]:
    """One Application per namespace of the team, each rendering `<path>/<environment>` of its repository with Kustomize."""
    namespaces = spec.namespaces or [team]
    sync: dict[str, Any] = {"syncOptions": ["CreateNamespace=false", "ServerSideApply=true", "RespectIgnoreDifferences=true"], "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}}}
    if spec.auto_sync:
        sync["automated"] = {"prune": True, "selfHeal": True}
    return {
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [{"list": {"elements": [{"namespace": ns, "environment": environment} for ns in namespaces]}}],
        "template": {
            "metadata": {"name": f"{team}-{{{{.namespace}}}}-{{{{.environment}}}}", "labels": {TEAM_LABEL: team}},
            "spec": {
                "project": team,
                "source": {"repoURL": spec.repo_url, "targetRevision": spec.revision, "path": f"{spec.path}/{{{{.environment}}}}"},
                "destination": {"server": server, "namespace": "{{.namespace}}"},
                "syncPolicy": sync,
                "ignoreDifferences": IGNORE_DIFFERENCES,
            },
        },
        # The ApplicationSet controller may create and update applications, never delete one a person relies on.
        "syncPolicy": {"applicationsSync": "create-update"},
    }


def chart_values(gc: GitOpsConfig) -> dict[str, Any]:
    """Values of the argo-cd chart: the stateless parts doubled and spread in HA mode, every container sized with a
    memory limit equal to its request and no CPU limit, metrics scraped, the platform's health checks."""
    ha = gc.chart.high_availability
    replicas = 2 if ha else 1
    # Metrics Services from the chart; the ServiceMonitors are the program's (METRICS), so the release need not wait
    # for the monitoring stack's CRDs.
    monitored = {"metrics": {"enabled": True}}
    pdb = {"pdb": {"enabled": ha, "minAvailable": 1}} if ha else {}
    # The chart sets no default resources: requests and a memory limit only.
    res = lambda cpu, memory: {"resources": helm.resources(cpu, memory, chart_limits_cpu=False)}  # noqa: E731
    # Argo CD's scratch (clones, rendered manifests, GPG keyring, plugin sockets) is emptyDir, bounded on the node's disk.
    scratch = lambda size: {"emptyDir": {"sizeLimit": size}}  # noqa: E731
    return {
        "crds": {"install": True, "keep": True},
        "global": {"logging": {"format": "json"}},
        "configs": {
            "cm": {
                # The initial admin login stays for operators until the account's SSO is set in argocd-cm (oidc.config);
                # teams' project roles name their SSO groups (docs/app-teams/gitops.md).
                "admin.enabled": True,
                "exec.enabled": False,
                **argocd_cm(),
            },
            "rbac": {"policy.default": "", "scopes": "[groups]"},
        },
        "controller": {"replicas": replicas, **pdb, **monitored, **res("500m", "1Gi"), **scratch("1Gi")},
        "server": {"replicas": replicas, **pdb, **monitored, **res("100m", "256Mi"), **scratch("1Gi")},
        "repoServer": {"replicas": replicas, **pdb, **monitored, **res("250m", "512Mi"), **scratch("4Gi")},
        "applicationSet": {"replicas": replicas, **pdb, **monitored, **res("100m", "256Mi"), **scratch("1Gi")},
        # A cache only: Argo CD rebuilds it after a restart. One replica in every mode; it never calls the API.
        "redis": {**res("100m", "256Mi"), "readinessProbe": {"enabled": True}, "livenessProbe": {"enabled": True}, "automountServiceAccountToken": False},
        "redisSecretInit": res("50m", "64Mi"),
        # Sign-in through the platform's SSO is configured in argocd-cm (oidc.config), not through a bundled Dex.
        "dex": {"enabled": False},
        "notifications": {"enabled": False},
    }


def dashboard() -> dict[str, Any]:
    """Grafana dashboard of the applications Argo CD delivers."""
    panels = [
        ("Applications by sync status", "sum by (sync_status) (argocd_app_info)", "short", "{{sync_status}}"),
        ("Applications by health", "sum by (health_status) (argocd_app_info)", "short", "{{health_status}}"),
        ("Applications out of sync", 'argocd_app_info{sync_status="OutOfSync"}', "short", "{{dest_namespace}}/{{name}}"),
        ("Syncs per hour by phase", "sum by (phase) (increase(argocd_app_sync_total[1h]))", "short", "{{phase}}"),
    ]
    return monitoring.dashboard("ml-gitops", "ML platform / GitOps delivery", panels)


def alert_rules() -> dict[str, Any]:
    """Applications out of sync or degraded, routed to the team whose namespace they deploy to."""
    # argocd_app_info's own `namespace` (where the Application lives) loses to the target's; the team is the destination.
    to_team = lambda expr: f'label_replace({expr}, "namespace", "$1", "dest_namespace", "(.+)")'  # noqa: E731
    return {
        "groups": [
            {
                "name": "ml-platform.gitops",
                "rules": [
                    alert_rule(
                        "ArgoCdAppOutOfSync",
                        to_team('max by (name, project, dest_namespace) (argocd_app_info{sync_status="OutOfSync"})') + " == 1",
                        "30m",
                        "warning",
                        "Application {{ $labels.name }} of project {{ $labels.project }} has differed from Git for 30 minutes",
                    ),
                    alert_rule(
                        "ArgoCdAppDegraded",
                        to_team('max by (name, project, dest_namespace, health_status) (argocd_app_info{health_status=~"Degraded|Missing"})') + " == 1",
                        "15m",
                        "warning",
                        "Application {{ $labels.name }} of project {{ $labels.project }} is {{ $labels.health_status }}",
                    ),
                ],
            }
        ]
    }


def capability_roles(gc: GitOpsConfig) -> dict[str, list[str]]:
    """The capability's built-in roles by Identity Center group: operators ADMIN; team groups VIEWER, so they can
    sign in; what they may do beyond viewing is their AppProject's developer role."""
    roles = {"ADMIN": sorted(gc.capability.admin_group_ids) if gc.capability else [], "VIEWER": sorted({g for s in gc.teams.values() for g in s.groups})}
    return {role: groups for role, groups in roles.items() if groups}


@dataclass(frozen=True)
class GitOpsArgs:
    config: PlatformConfig
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider
    team_namespaces: dict[str, pulumi.Resource]
    # The monitoring stack's CRDs (ServiceMonitor, PrometheusRule) and its Grafana sidecar.
    monitoring_release: pulumi.Resource
    depends_on: list[pulumi.Resource]
    # The chart's pods run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource


class GitOps(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    projects: dict[str, str]

    def __init__(self, name: str, args: GitOpsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:gitops:GitOps", name, None, opts)
        cfg, gc = args.config, args.config.gitops
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        if gc.mode == "capability":
            server, argocd = self._capability(name, cfg, args)
        else:
            server, argocd = self._chart(name, cfg, args, k8s_opts)

        # The custom resources need Argo CD's CRDs (the chart's, or those the capability installs) and the team namespace.
        self.projects = {}
        tokens = cfg.gitops_repo_tokens
        for team, spec in sorted(gc.teams.items()):
            labels = {**PLATFORM_LABELS, TEAM_LABEL: team}
            namespace = args.team_namespaces[team]
            repo: list[pulumi.Resource] = []
            if spec.private:
                # Argo CD reads repository credentials from Secrets labelled as such in its namespace.
                repo.append(
                    k8s.core.v1.Secret(
                        f"{name}-{team}-repository",
                        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"repo-{team}", namespace=NAMESPACE, labels={**labels, SECRET_TYPE_LABEL: "repository"}),
                        type="Opaque",
                        string_data={
                            "type": "git",
                            "url": spec.repo_url,
                            "project": team,
                            "username": "git",
                            "password": pulumi.Output.secret(tokens[team].get_secret_value()),
                        },
                        opts=k8s_opts(*argocd),
                    )
                )
            project = k8s.apiextensions.CustomResource(
                f"{name}-{team}-project",
                api_version="argoproj.io/v1alpha1",
                kind="AppProject",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=team, namespace=NAMESPACE, labels=labels),
                spec=project_spec(team, spec, server),
                opts=k8s_opts(*argocd),
            )
            k8s.apiextensions.CustomResource(
                f"{name}-{team}-applications",
                api_version="argoproj.io/v1alpha1",
                kind="ApplicationSet",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=team, namespace=NAMESPACE, labels=labels),
                spec=application_set_spec(team, spec, cfg.environment, server),
                # Its applications deploy into the team's namespace under the project's fence, with the repository's credentials.
                opts=k8s_opts(*argocd, project, namespace, *repo),
            )
            self.projects[team] = team
        self.register_outputs({"endpoint": self.endpoint, "projects": self.projects})

    def _capability(self, name: str, cfg: PlatformConfig, args: GitOpsArgs) -> tuple[pulumi.Input[str], list[pulumi.Resource]]:
        """Argo CD run by EKS outside the cluster: its role, the capability, and this cluster registered as a target."""
        cap = cfg.gitops.capability
        assert cap is not None  # the settings require it in this mode
        # The capability assumes this role; no permissions of its own: repositories are read with the tokens in Secrets.
        role = aws.iam.Role(
            f"{name}-capability",
            aws.iam.RoleArgs(
                assume_role_policy=service_trust_policy("capabilities.eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession")),
                description="EKS Argo CD capability: identity of Argo CD towards the cluster",
                tags=cfg.tags_for(f"{cfg.cluster_name}-argocd"),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        capability = aws.eks.Capability(
            name,
            aws.eks.CapabilityArgs(
                capability_name=CAPABILITY,
                cluster_name=args.cluster_name,
                type="ARGOCD",
                role_arn=role.arn,
                # The only value EKS accepts: deleting the capability leaves what Argo CD deployed in place.
                delete_propagation_policy="RETAIN",
                configuration=aws.eks.CapabilityConfigurationArgs(
                    argo_cd=aws.eks.CapabilityConfigurationArgoCdArgs(
                        namespace=NAMESPACE,
                        aws_idc=aws.eks.CapabilityConfigurationArgoCdAwsIdcArgs(idc_instance_arn=cap.idc_instance_arn, idc_region=cap.idc_region),
                        rbac_role_mappings=[
                            aws.eks.CapabilityConfigurationArgoCdRbacRoleMappingArgs(
                                role=role_name,
                                identities=[aws.eks.CapabilityConfigurationArgoCdRbacRoleMappingIdentityArgs(id=g, type="SSO_GROUP") for g in groups],
                            )
                            for role_name, groups in capability_roles(cfg.gitops).items()
                        ]
                        or None,
                    )
                ),
                tags=cfg.tags_for(f"{cfg.cluster_name}-argocd"),
            ),
            # The cluster's critical add-ons first: a capability on a cluster that cannot run pods has nothing to deliver to.
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.endpoint = capability.configuration.apply(lambda c: (c.argo_cd.server_url if c and c.argo_cd else None) or "")
        # EKS creates the capability role's access entry with no Kubernetes permissions: admin within the team
        # namespaces only (each AppProject narrows it to the team's kinds), nothing cluster-wide.
        association = aws.eks.AccessPolicyAssociation(
            f"{name}-capability-teams",
            aws.eks.AccessPolicyAssociationArgs(
                cluster_name=args.cluster_name,
                principal_arn=role.arn,
                policy_arn=NAMESPACE_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="namespace", namespaces=sorted(cfg.gitops.teams)),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[capability]),
        )
        acct = account.current()
        cluster_arn = args.cluster_name.apply(lambda n: f"arn:{acct.partition}:eks:{cfg.region}:{acct.account_id}:cluster/{n}")
        # The capability does not register its own cluster: a cluster Secret whose server is the cluster's ARN.
        registration = k8s.core.v1.Secret(
            f"{name}-in-cluster",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="in-cluster", namespace=NAMESPACE, labels={**PLATFORM_LABELS, SECRET_TYPE_LABEL: "cluster"}),
            type="Opaque",
            string_data={"name": "in-cluster", "server": cluster_arn},
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[capability]),
        )
        return cluster_arn, [capability, association, registration]

    def _chart(self, name: str, cfg: PlatformConfig, args: GitOpsArgs, k8s_opts) -> tuple[str, list[pulumi.Resource]]:
        """Argo CD from the upstream chart in its own namespace, with its metrics, a dashboard and alerts."""
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE,
                labels={
                    **PLATFORM_LABELS,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
            opts=k8s_opts(),
        )
        release = helm.release(
            name,
            name=RELEASE,
            chart=RELEASE,
            repository=REPOSITORY,
            version=cfg.gitops.chart.version,
            namespace=NAMESPACE,
            values=chart_values(cfg.gitops),
            # Its pods wait for a cpu node from Karpenter.
            timeout=timing.HELM_ON_NEW_NODES,
            # Beside the monitoring stack, not after it.
            opts=k8s_opts(namespace, args.general_capacity),
        )
        for component, (service, port) in sorted(METRICS.items()):
            k8s.apiextensions.CustomResource(
                f"{name}-{component}-metrics",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"argocd-{component}", namespace=NAMESPACE, labels=PLATFORM_LABELS),
                spec={
                    "selector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": component, "app.kubernetes.io/name": service}},
                    "namespaceSelector": {"matchNames": [NAMESPACE]},
                    "endpoints": [{"port": port, "path": "/metrics", "interval": "30s"}],
                },
                # The monitoring stack's CRD, and the Service it selects.
                opts=k8s_opts(args.monitoring_release, release),
            )
        self.endpoint = pulumi.Output.from_input(f"https://{RELEASE}-argocd-server.{NAMESPACE}.svc.cluster.local")
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="dashboard-ml-gitops", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}),
            data={"ml-gitops.json": json.dumps(dashboard(), indent=2, sort_keys=True)},
            opts=k8s_opts(args.monitoring_release),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ml-platform-gitops", namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
            spec=alert_rules(),
            opts=k8s_opts(args.monitoring_release),
        )
        return IN_CLUSTER, [release]
