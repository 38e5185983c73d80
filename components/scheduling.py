"""Gang admission of training: Kueue queues per team (or Volcano, as the option), and JobSet for distributed runs.

With Kueue, every training run is created suspended with its team's LocalQueue label; Kueue admits it whole,
against the team's ClusterQueue, when all its pods fit, and evicts and requeues it when its pods are not all
running within `scheduling.waitForPodsReadyMinutes`. CPU and memory are counted once per team, on a flavor that
pins no pool, and each accelerator on its pool's flavor: the ClusterQueue's quota is the namespace's
ResourceQuota less what runs there outside Kueue (serving pods and their sidecars at their peak, the team's
`quota.outsideQueue`), so what Kueue admits always fits the quota.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.config import PlatformConfig, SchedulingConfig, TeamConfig
from infra.lib import headroom, helm
from infra.lib.accelerators import GPU_DEVICE_CLASS, KINDS, NVIDIA, pool_labels
from infra.lib.conventions import SERVING_PRIORITY, TRAINING_PRIORITY
from infra.lib.gang import LOCAL_QUEUE, QUEUE_LABEL

KUEUE_NAMESPACE = "kueue-system"
JOBSET_NAMESPACE = "jobset-system"
VOLCANO_NAMESPACE = "volcano-system"
KUEUE_CHARTS = "oci://registry.k8s.io/kueue/charts"
JOBSET_CHARTS = "oci://registry.k8s.io/jobset/charts"
VOLCANO_CHARTS = "https://volcano-sh.github.io/helm-charts"
COHORT = "ml-platform"
# CPU and memory of any pool: a flavor with no node labels, so it never conflicts with an accelerator flavor's.
DEFAULT_FLAVOR = "default"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# Kueue's workload priorities mirror the platform's priority classes (components/tenancy.py).
WORKLOAD_PRIORITIES = {SERVING_PRIORITY: 100000, TRAINING_PRIORITY: 10000}


def flavor_specs(cfg: PlatformConfig) -> dict[str, dict[str, Any]]:
    """The default flavor, and one per enabled accelerator pool with its node labels and taint."""
    flavors: dict[str, dict[str, Any]] = {DEFAULT_FLAVOR: {}}
    for pool in cfg.node_pools.enabled():
        kind = KINDS[pool]
        if kind.resource:
            flavors[pool] = {"nodeLabels": pool_labels(pool, kind), "nodeTaints": [kind.taint]}
    return flavors


def borrowable(cfg: PlatformConfig, team: TeamConfig) -> dict[str, int]:
    """What the team may borrow, in infra/lib/headroom.py's units: what its ResourceQuota grows by (components/tenancy.py),
    less any of it serving may hold beyond the team's own quota."""
    own, outside = headroom.queue_quota(cfg, team), headroom.outside_queue(cfg, team)
    grown = headroom.namespace_quota(team, cfg.scheduling.borrowing_limit_percent)
    return {r: max(0, grown[r] - outside[r] - own[r]) for r in grown}


def cluster_queue_spec(team: TeamConfig, cfg: PlatformConfig) -> dict[str, Any]:
    """The queue's own quota is the namespace's less what runs outside Kueue (infra/lib/headroom.py); what the team may
    borrow is what its ResourceQuota grows by. Admitted runs and everything else then fit the ResourceQuota together."""
    percent = cfg.scheduling.borrowing_limit_percent
    nominal, borrowing = headroom.queue_quota(cfg, team), borrowable(cfg, team)

    def quota(resource: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": resource, "nominalQuota": headroom.quantity(resource, nominal[resource])}
        if percent:
            entry["borrowingLimit"] = headroom.quantity(resource, borrowing[resource])
        return entry

    groups = [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": DEFAULT_FLAVOR, "resources": [quota("cpu"), quota("memory")]}]}]
    for pool in sorted(set(flavor_specs(cfg)) - {DEFAULT_FLAVOR}):
        resource = KINDS[pool].resource
        groups.append({"coveredResources": [resource], "flavors": [{"name": pool, "resources": [quota(resource)]}]})
    return {
        "cohortName": COHORT,
        # Only the team's own namespace submits to its queue.
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": team.name}},
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": groups,
        "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any", "borrowWithinCohort": {"policy": "Never"}},
    }


def kueue_manager_config(cfg: PlatformConfig, team_namespaces: list[str]) -> str:
    sc = cfg.scheduling
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "clientConnection": {"qps": 50, "burst": 100},
        # Only what names a queue: with its pod integration on, Kueue would otherwise gate every pod of a team namespace,
        # serving pods included. A run that names none is refused at admission instead (run_queue_policy).
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(team_namespaces)}]},
        # All-or-nothing: a run whose pods do not all run in time gives its quota back and waits again.
        "waitForPodsReady": {
            "timeout": f"{sc.wait_for_pods_ready_minutes}m",
            "blockAdmission": False,
            "requeuingStrategy": {"timestamp": "Eviction", "backoffBaseSeconds": 60, "backoffMaxSeconds": 3600},
        },
        # TrainJobs (Kubeflow Trainer) are admitted whole; the JobSet each runs as is their child, not a second workload.
        # Pipeline steps are Argo pods, each admitted as a workload of its own (the `pod` integration).
        "integrations": {"frameworks": [
            "batch/job", "jobset.x-k8s.io/jobset", *(["trainer.kubeflow.org/trainjob"] if cfg.training.enabled else []),
            *(["pod"] if cfg.kubeflow.pipelines_on else []),
        ]},
    }
    if cfg.accelerators.gpu_operator.dra.enabled:
        # GPUs claimed through DRA count against the queue's nvidia.com/gpu quota.
        config["resources"] = {"deviceClassMappings": [{"name": NVIDIA.resource, "deviceClassNames": [GPU_DEVICE_CLASS]}]}
    return yaml.safe_dump(config, sort_keys=False)


# A Job of a JobSet, or the JobSet of a TrainJob, is admitted with its parent, as Kueue decides it
# (jobframework.FindAncestorJobManagedByKueue): only the parent names the queue.
QUEUED_PARENTS = {"JobSet": "jobset.x-k8s.io/", "TrainJob": "trainer.kubeflow.org/"}
RUN_RESOURCES = {"batch": "jobs", "jobset.x-k8s.io": "jobsets", "trainer.kubeflow.org": "trainjobs"}
RUN_QUEUE_POLICY = "ml-platform-runs-name-their-queue"


def run_queue_expressions() -> tuple[str, str]:
    """The policy's match condition (not the child of a queued run) and validation (names a queue), in CEL."""
    parents = " || ".join(f"(o.kind == '{kind}' && o.apiVersion.startsWith('{group}'))" for kind, group in sorted(QUEUED_PARENTS.items()))
    not_a_child = f"!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(o, {parents})"
    names_queue = f"has(object.metadata.labels) && '{QUEUE_LABEL}' in object.metadata.labels && object.metadata.labels['{QUEUE_LABEL}'] != ''"
    return not_a_child, names_queue


def run_queue_policy() -> k8s.admissionregistration.v1.ValidatingAdmissionPolicySpecArgs:
    """Kueue manages only runs that name a queue (manageJobsWithoutQueueName: false): one created without would run
    beside the team's queue, unadmitted. A CronJob's Jobs are judged as they are created."""
    admission = k8s.admissionregistration.v1
    not_a_child, names_queue = run_queue_expressions()
    return admission.ValidatingAdmissionPolicySpecArgs(
        failure_policy="Fail",
        match_constraints=admission.MatchResourcesArgs(resource_rules=[
            admission.NamedRuleWithOperationsArgs(api_groups=[group], api_versions=["*"], operations=["CREATE"], resources=[resource])
            for group, resource in sorted(RUN_RESOURCES.items())
        ]),
        match_conditions=[admission.MatchConditionArgs(name="not-the-child-of-a-queued-run", expression=not_a_child)],
        validations=[admission.ValidationArgs(
            expression=names_queue,
            reason="Invalid",
            message=f"a run in a team namespace names the team's Kueue queue: set the label {QUEUE_LABEL}: {LOCAL_QUEUE}",
        )],
    )


def kueue_values(cfg: PlatformConfig, team_namespaces: list[str], selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    sc = cfg.scheduling
    return {
        "controllerManager": {
            # The chart's source defaults to a staging image; the release is pinned here.
            "manager": {
                "image": {"repository": "registry.k8s.io/kueue/kueue", "tag": f"v{sc.kueue_version}", "pullPolicy": "IfNotPresent"},
                "resources": helm.resources("500m", "512Mi"),
            },
            "replicas": sc.replicas,
            "podDisruptionBudget": {"enabled": sc.replicas > 1, "minAvailable": 1},
            "nodeSelector": selector,
            "tolerations": [toleration],
        },
        "enablePrometheus": True,
        "managerConfig": {"controllerManagerConfigYaml": kueue_manager_config(cfg, team_namespaces)},
    }


def jobset_values(sc: SchedulingConfig, selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    return {
        "image": {"repository": "registry.k8s.io/jobset/jobset", "tag": f"v{sc.jobset_version}", "pullPolicy": "IfNotPresent"},
        "controller": {
            "replicas": sc.replicas,
            "resources": helm.resources("250m", "256Mi"),
            "nodeSelector": selector,
            "tolerations": [toleration],
            "podDisruptionBudget": {"enabled": sc.replicas > 1, "minAvailable": 1},
        },
    }


def volcano_queue_spec(team: TeamConfig, cfg: PlatformConfig) -> dict[str, Any]:
    """The team's quota less what runs outside the queue as its share (deserved) and, with what it may borrow, its
    ceiling (capability)."""
    own, borrowing = headroom.queue_quota(cfg, team), borrowable(cfg, team)
    return {
        "weight": 1,
        "reclaimable": True,
        "deserved": {r: headroom.quantity(r, n) for r, n in own.items()},
        "capability": {r: headroom.quantity(r, n + borrowing[r]) for r, n in own.items()},
    }


def volcano_values(cfg: PlatformConfig, team_namespaces: list[str], selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    sc = cfg.scheduling
    return {
        "basic": {"image_pull_policy": "IfNotPresent", "image_tag_version": f"v{sc.volcano_version}"},
        "custom": {
            "admission_replicas": sc.replicas,
            "controller_replicas": sc.replicas,
            "scheduler_replicas": sc.replicas,
            "leader_elect_enable": sc.replicas > 1,
            "default_ns": selector,
            "default_tolerations": [toleration],
            "admission_resources": helm.resources("250m", "256Mi"),
            "controller_resources": helm.resources("250m", "256Mi"),
            "scheduler_resources": helm.resources("500m", "512Mi"),
            # Its admission webhooks judge only the team namespaces' objects.
            "webhooks_namespace_selector_expressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(team_namespaces)}],
        },
    }


@dataclass(frozen=True)
class SchedulingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    team_namespaces: dict[str, pulumi.Resource]
    # Kueue's chart renders a ServiceMonitor: the monitoring stack's CRDs first.
    monitoring_release: pulumi.Resource
    depends_on: list[pulumi.Resource]


class Scheduling(pulumi.ComponentResource):
    # By team: what a training run's submission waits for (its LocalQueue, or its Volcano Queue).
    queues: dict[str, pulumi.Resource]
    # The JobSet controller and CRD: distributed runs need it.
    jobset: pulumi.Resource

    def __init__(self, name: str, args: SchedulingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:scheduling:Scheduling", name, None, opts)
        sc = args.config.scheduling
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731
        system = (args.system_node_selector, args.system_toleration)

        def namespace(key: str, ns: str, level: str = "restricted") -> k8s.core.v1.Namespace:
            return k8s.core.v1.Namespace(
                f"{name}-{key}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={"pod-security.kubernetes.io/enforce": level, **PLATFORM_LABELS}),
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
            )

        jobset_ns = namespace("jobset", JOBSET_NAMESPACE)
        self.jobset = helm.release(
            f"{name}-jobset",
            name="jobset",
            chart="jobset",
            repository=JOBSET_CHARTS,
            version=sc.jobset_version,
            namespace=JOBSET_NAMESPACE,
            values=jobset_values(sc, *system),
            opts=k8s_opts(jobset_ns),
        )
        teams = sorted(args.team_namespaces)
        if sc.gang == "kueue":
            self.queues = self._kueue(name, args, namespace("kueue", KUEUE_NAMESPACE), teams, k8s_opts)
        else:
            # Volcano's containers add DAC_OVERRIDE (its chart's default security context), which restricted refuses.
            self.queues = self._volcano(name, args, namespace("volcano", VOLCANO_NAMESPACE, "baseline"), teams, k8s_opts)
        self.register_outputs({"gang": sc.gang})

    def _kueue(self, name: str, args: SchedulingArgs, ns: k8s.core.v1.Namespace, teams: list[str], k8s_opts) -> dict[str, pulumi.Resource]:
        cfg = args.config
        controller = helm.release(
            f"{name}-kueue",
            name="kueue",
            chart="kueue",
            repository=KUEUE_CHARTS,
            version=cfg.scheduling.kueue_version,
            namespace=KUEUE_NAMESPACE,
            values=kueue_values(cfg, teams, args.system_node_selector, args.system_toleration),
            # Kueue's webhooks admit Jobs and JobSets: the JobSet CRD must exist for its integration to start.
            opts=k8s_opts(ns, self.jobset, args.monitoring_release),
        )

        def custom(resource_name: str, kind: str, metadata: dict[str, Any], spec: dict[str, Any], *deps: pulumi.Resource):
            return k8s.apiextensions.CustomResource(
                resource_name,
                api_version="kueue.x-k8s.io/v1beta2",
                kind=kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=PLATFORM_LABELS, **metadata),
                spec=spec,
                opts=k8s_opts(controller, *deps),
            )

        flavors = [custom(f"{name}-flavor-{f}", "ResourceFlavor", {"name": f}, spec) for f, spec in sorted(flavor_specs(cfg).items())]
        for priority, value in sorted(WORKLOAD_PRIORITIES.items()):
            # Its fields sit beside metadata, not under spec, which CustomResource cannot express.
            pulumi.CustomResource(
                "kubernetes:kueue.x-k8s.io/v1beta2:WorkloadPriorityClass",
                f"{name}-priority-{priority}",
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta2",
                    "kind": "WorkloadPriorityClass",
                    "metadata": {"name": priority, "labels": PLATFORM_LABELS},
                    "value": value,
                    "description": f"as the {priority} PriorityClass: serving preempts training, never the reverse",
                },
                opts=k8s_opts(controller),
            )
        admission = k8s.admissionregistration.v1
        policy = admission.ValidatingAdmissionPolicy(
            f"{name}-run-queue-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=RUN_QUEUE_POLICY, labels=PLATFORM_LABELS),
            spec=run_queue_policy(),
            opts=k8s_opts(),
        )
        binding = admission.ValidatingAdmissionPolicyBinding(
            f"{name}-run-queue-policy-binding",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=RUN_QUEUE_POLICY, labels=PLATFORM_LABELS),
            spec=admission.ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=policy.metadata.name,
                validation_actions=["Deny"],
                match_resources=admission.MatchResourcesArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_expressions=[k8s.meta.v1.LabelSelectorRequirementArgs(key="kubernetes.io/metadata.name", operator="In", values=teams)],
                )),
            ),
            opts=k8s_opts(policy),
        )
        queues: dict[str, pulumi.Resource] = {}
        for team in cfg.teams:
            cluster_queue = custom(f"{name}-{team.name}-cluster-queue", "ClusterQueue", {"name": team.name}, cluster_queue_spec(team, cfg), *flavors)
            queues[team.name] = custom(
                f"{name}-{team.name}-queue",
                "LocalQueue",
                {"name": LOCAL_QUEUE, "namespace": team.name},
                {"clusterQueue": team.name},
                cluster_queue,
                args.team_namespaces[team.name],
                # A team's runs wait for their queue: by then, one that names none is refused.
                binding,
            )
        return queues

    def _volcano(self, name: str, args: SchedulingArgs, ns: k8s.core.v1.Namespace, teams: list[str], k8s_opts) -> dict[str, pulumi.Resource]:
        cfg = args.config
        controller = helm.release(
            f"{name}-volcano",
            name="volcano",
            chart="volcano",
            repository=VOLCANO_CHARTS,
            version=cfg.scheduling.volcano_version,
            namespace=VOLCANO_NAMESPACE,
            values=volcano_values(cfg, teams, args.system_node_selector, args.system_toleration),
            opts=k8s_opts(ns),
        )
        return {
            team.name: k8s.apiextensions.CustomResource(
                f"{name}-{team.name}-queue",
                api_version="scheduling.volcano.sh/v1beta1",
                kind="Queue",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=team.name, labels=PLATFORM_LABELS),
                spec=volcano_queue_spec(team, cfg),
                opts=k8s_opts(controller),
            )
            for team in cfg.teams
        }
