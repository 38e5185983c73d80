"""Kubeflow Trainer: the controller (its Helm chart), a ClusterTrainingRuntime per node pool, and a TrainJob for each
distributed training workload, submitted through the team's queue.

A TrainJob names its runtime and brings its image, command, node count and resources; the controller turns it into a
JobSet (the JobSet controller of the scheduling component) whose pods torchrun joins through the PET_* variables the
Trainer injects. Kueue admits the TrainJob whole (its `trainer.kubeflow.org/trainjob` integration), or Volcano gangs
its pods (the runtime's podGroupPolicy).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig, TrainingRuntime, TrainingWorkload, runtimes_for
from infra.config.training import MAX_RESTARTS
from infra.lib import helm, model_store, monitoring
from infra.lib.accelerators import KINDS, POOL_LABEL
from infra.lib.conventions import DASHBOARD_LABEL, MODEL_STORE_PATH, MONITORING_NAMESPACE, TEAM_LABEL, TRAINING_PRIORITY
from infra.lib.gang import submission
from infra.lib.interfaces import TeamInfo
from policies.rules.efa import EFA_RESOURCE

NAMESPACE = "kubeflow-system"
RELEASE = "kubeflow-trainer"
CHARTS = "oci://ghcr.io/kubeflow/charts"
API = "trainer.kubeflow.org/v1alpha1"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# The replicated job and container every torch runtime names; the Trainer injects PET_* into this container.
NODE = "node"
# The runtime patches the platform owns on its TrainJobs (keyed by manager; Kueue adds its own on admission).
PATCH_MANAGER = "ml-platform.io/training"
RUN_AS = 10001
# EFA's libfabric settings for collectives between nodes: AWS Neuron's multi-node guide (setup-trn1-multi-node-execution)
# and the Neuron samples set these three; RDMA reads/writes on the device, and fork safety for data loader workers.
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# Batch pods serve no traffic; a sidecar would keep a finished pod running and sit in the path of collectives.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}


def trainer_values(cfg: PlatformConfig) -> dict[str, Any]:
    t = cfg.training.trainer
    return {
        # The scheduling component installs JobSet (and Kueue, which admits JobSets and TrainJobs) for every stack.
        "jobset": {"install": False},
        "image": {"tag": f"v{t.version}"},
        "manager": {
            "replicas": t.replicas,
            # The chart sets no resources by default.
            "resources": helm.resources("100m", "256Mi", chart_limits_cpu=False),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        },
        # The platform declares its own runtimes (below), validated by the Trainer's webhook like any other.
        "runtimes": {"defaultEnabled": False},
    }


def runtime_spec(cfg: PlatformConfig, runtime: TrainingRuntime) -> dict[str, Any]:
    """torchrun on one pool: the pool's node selector and taint, the training priority, restricted pods, and EFA's
    libfabric settings on EFA pools. numNodes is the TrainJob's."""
    kind = KINDS[runtime.pool]
    env = EFA_ENV if runtime.efa_devices_per_node else {}
    pod: dict[str, Any] = {
        "priorityClassName": TRAINING_PRIORITY,
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {POOL_LABEL: runtime.pool},
        "containers": [
            {
                "name": NODE,
                "image": runtime.image,
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                # The only writable path of the read-only root, for any TrainJob naming the runtime.
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                **({"env": [{"name": k, "value": v} for k, v in sorted(env.items())]} if env else {}),
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if kind.toleration:
        pod["tolerations"] = [kind.toleration]
    if cfg.scheduling.gang == "volcano":
        pod["schedulerName"] = "volcano"
    spec: dict[str, Any] = {
        "mlPolicy": {"numNodes": 1, "torch": {}},
        "template": {
            "spec": {
                # A failed or preempted node restarts them all, from the last checkpoint.
                "failurePolicy": {"maxRestarts": MAX_RESTARTS},
                "replicatedJobs": [
                    {
                        "name": NODE,
                        "template": {
                            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                            # No retry of one pod: a failure restarts all nodes together (failurePolicy).
                            "spec": {"backoffLimit": 0, "template": {"spec": pod}},
                        },
                    }
                ],
            }
        },
    }
    if cfg.scheduling.gang == "volcano":
        spec["podGroupPolicy"] = {"volcano": {}}
    return spec


def runtime_of(cfg: PlatformConfig, pool: str) -> TrainingRuntime:
    return next(r for r in runtimes_for(cfg.training, cfg.node_pools.enabled()) if r.pool == pool)


def trainjob_name(w: TrainingWorkload) -> str:
    return f"{w.name}-{w.run_id}"


def trainjob_spec(cfg: PlatformConfig, w: TrainingWorkload, team: TeamInfo) -> dict[str, Any]:
    """The workload's TrainJob: its runtime, nodes and resources, and (patched into the runtime's pod) its service
    account, volumes (data, checkpoints, the team's model store) and the env the training code reads."""
    runtime = runtime_of(cfg, w.accelerator)
    memory = f"{int(w.resources.memory_gib * 1024)}Mi"
    requests: dict[str, str] = {"cpu": w.resources.cpu, "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    kind = KINDS[w.accelerator]
    if kind.resource:
        requests[kind.resource] = limits[kind.resource] = str(w.accelerator_count)
    if runtime.efa_devices_per_node:
        requests[EFA_RESOURCE] = limits[EFA_RESOURCE] = str(runtime.efa_devices_per_node)
    name = trainjob_name(w)
    env = {**w.env, "DATA_DIR": w.data.mount_path, "CHECKPOINT_DIR": w.checkpoints.mount_path}
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": f"{w.name}-data"}},
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": f"{w.name}-checkpoints"}},
    ]
    mounts = [
        {"name": "data", "mountPath": w.data.mount_path},
        {"name": "checkpoints", "mountPath": w.checkpoints.mount_path},
    ]
    if w.output:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": model_store.claim(cfg, w.team, publish=True)}})
        mounts.append({"name": "models", "mountPath": MODEL_STORE_PATH})
        env.update(MODEL_STORE=MODEL_STORE_PATH, OUTPUT_MODEL=w.output.name, OUTPUT_VERSION=w.output.version, JOB_NAME=f"{team.namespace}/{name}",
                   **model_store.publisher_env(cfg, w.team))
    via = submission(cfg.scheduling.gang, w.team)
    pod_annotations = {"karpenter.sh/do-not-disrupt": "true", **NO_SIDECAR}
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": runtime.name},
        "activeDeadlineSeconds": w.active_deadline_hours * 3600,
        "trainer": {
            "image": w.image,
            "command": list(w.command),
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "numNodes": w.workers,
            "numProcPerNode": max(1, w.accelerator_count),
            "resourcesPerNode": {"requests": requests, "limits": limits},
        },
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": NODE,
                                    "template": {
                                        "spec": {
                                            "template": {
                                                "metadata": {"labels": {"app": w.name, TEAM_LABEL: w.team}, "annotations": pod_annotations},
                                                "spec": {
                                                    "serviceAccountName": w.name,
                                                    "volumes": volumes,
                                                    "containers": [{"name": NODE, "volumeMounts": mounts}],
                                                },
                                            }
                                        }
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        ],
    }
    if via.suspend:
        spec["suspend"] = True
    return spec


def dashboard() -> dict[str, Any]:
    """Grafana: TrainJobs by state (the Trainer's controller metrics), and the JobSets it runs, per namespace."""

    panels = [
        ("TrainJob reconciles per second", 'sum by (result) (rate(controller_runtime_reconcile_total{controller="trainjob_controller"}[5m]))', "{{result}}"),
        ("TrainJob reconcile errors per second", 'sum(rate(controller_runtime_reconcile_errors_total{controller="trainjob_controller"}[5m]))', "errors"),
        ("Training pods running, by team", 'sum by (namespace) (kube_pod_status_phase{phase="Running", pod=~".+-node-[0-9]+-[0-9]+-.+"})', "{{namespace}}"),
    ]
    return monitoring.dashboard("ml-training", "ML platform: training", [(t, e, "short", legend) for t, e, legend in panels])


@dataclass(frozen=True)
class TrainingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    teams: dict[str, TeamInfo]
    queues: dict[str, pulumi.Resource]  # by team: its LocalQueue (or Volcano Queue)
    jobset: pulumi.Resource  # the JobSet controller and CRD: a TrainJob runs as a JobSet
    model_stores: dict[str, pulumi.Resource]  # by team: the model store's claim
    node_pools: dict[str, pulumi.Resource]
    priority_classes: dict[str, pulumi.Resource]
    # By "team/workload": what a distributed workload's TrainJob needs first (its service account and claims).
    distributed: dict[str, list[pulumi.Resource]]
    monitoring_release: pulumi.Resource  # the ServiceMonitor CRD
    # The Trainer's controller runs on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource


class Training(pulumi.ComponentResource):
    controller: k8s.helm.v3.Release
    runtimes: dict[str, pulumi.Resource]  # by pool
    trainjobs: dict[str, pulumi.Resource]  # by "team/workload"

    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:training:Training", name, None, opts)
        cfg = args.config
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps))  # noqa: E731

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted", **PLATFORM_LABELS}),
            opts=k8s_opts(),
        )
        # Awaited (atomic): its webhooks serve before any runtime or TrainJob is created.
        self.controller = helm.release(
            f"{name}-trainer",
            name=RELEASE,
            chart=RELEASE,
            repository=CHARTS,
            version=cfg.training.trainer.version,
            namespace=NAMESPACE,
            values=trainer_values(cfg),
            opts=k8s_opts(ns, args.jobset, args.general_capacity),
        )
        self.runtimes = {
            r.pool: k8s.apiextensions.CustomResource(
                f"{name}-runtime-{r.name}",
                api_version=API,
                kind="ClusterTrainingRuntime",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=r.name, labels={"trainer.kubeflow.org/framework": "torch", **PLATFORM_LABELS}),
                spec=runtime_spec(cfg, r),
                opts=k8s_opts(self.controller),
            )
            for r in runtimes_for(cfg.training, cfg.node_pools.enabled())
        }
        self.trainjobs = {}
        for w in cfg.workloads:
            if not (isinstance(w, TrainingWorkload) and w.workers > 1):
                continue
            team = args.teams[w.team]
            via = submission(cfg.scheduling.gang, w.team)
            labels = {"app": w.name, "app.kubernetes.io/name": w.name, **PLATFORM_LABELS, TEAM_LABEL: w.team, **via.labels}
            # Under Volcano the runtime's PodGroup takes its queue from the TrainJob's annotation.
            annotations = {**SKIP_AWAIT, **via.run_annotations, **via.pod_annotations}
            store = [args.model_stores[w.team]] if w.output else []
            key = f"{w.team}/{w.name}"
            # A training run takes hours: not awaited. Kueue flips spec.suspend on admission, which is not drift.
            opts = pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[
                    team.namespace_resource, *team.guardrails, args.queues[w.team], self.runtimes[w.accelerator],
                    args.node_pools[w.accelerator], args.priority_classes[TRAINING_PRIORITY], *store, *args.distributed[key],
                ],
            )
            self.trainjobs[key] = k8s.apiextensions.CustomResource(
                f"{name}-{w.team}-{w.name}",
                api_version=API,
                kind="TrainJob",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=trainjob_name(w), namespace=team.namespace, labels=labels, annotations=annotations),
                spec=trainjob_spec(cfg, w, team),
                opts=pulumi.ResourceOptions.merge(opts, via.options(["spec.suspend"] if via.suspend else [])),
            )

        # Controller metrics (controller-runtime's, served over HTTPS behind the API server's authorization).
        k8s.apiextensions.CustomResource(
            f"{name}-trainer-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="kubeflow-trainer", namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
            spec={
                "namespaceSelector": {"matchNames": [NAMESPACE]},
                "selector": {"matchLabels": {"app.kubernetes.io/name": RELEASE, "app.kubernetes.io/component": "manager"}},
                "endpoints": [
                    {
                        "port": "monitoring-port",
                        "scheme": "https",
                        "path": "/metrics",
                        "interval": "30s",
                        "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                        # The controller signs its metrics certificate itself.
                        "tlsConfig": {"insecureSkipVerify": True},
                    }
                ],
            },
            opts=k8s_opts(args.monitoring_release, self.controller),
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="dashboard-ml-training", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}),
            data={"ml-training.json": json.dumps(dashboard(), indent=2, sort_keys=True)},
            opts=k8s_opts(args.monitoring_release),
        )
        self.register_outputs({"runtimes": sorted(r.name for r in runtimes_for(cfg.training, cfg.node_pools.enabled())), "trainJobs": sorted(self.trainjobs)})
