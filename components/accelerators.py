"""Accelerator software: NVIDIA GPU operator, Neuron device plugin and scheduler, EFA device plugin, metrics-server."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.lib import helm
from infra.lib.accelerators import ACCELERATOR_LABEL, KINDS, NEURON, NVIDIA
from infra.config import GpuOperator, PlatformConfig
from infra.lib.monitoring import GPU_NODE_LABEL, ScrapeTarget
from policies.rules.efa import EFA_LABEL

GPU_OPERATOR_NAMESPACE = "gpu-operator"
GPU_OPERATOR_REPOSITORY = "https://helm.ngc.nvidia.com/nvidia"
NEURON_REPOSITORY = "oci://public.ecr.aws/neuron"
EKS_CHARTS_REPOSITORY = "https://aws.github.io/eks-charts"
METRICS_SERVER_REPOSITORY = "https://kubernetes-sigs.github.io/metrics-server/"
DRA_DRIVER_REPOSITORY = "oci://registry.k8s.io/dra-driver-nvidia/charts"
DRA_DRIVER_NAMESPACE = "nvidia-dra-driver-gpu"
TIME_SLICING_CONFIG = "time-slicing-config"
NEURON_MONITOR_LABELS = {"app.kubernetes.io/name": "neuron-monitor", "app.kubernetes.io/part-of": "ml-platform"}
NEURON_MONITOR_PORT = 8000


def _toleration_exists(key: str) -> dict[str, str]:
    # Operand DaemonSets must land on every node carrying the key, whatever its value.
    return {"key": key, "operator": "Exists", "effect": "NoSchedule"}


def time_slicing_config(replicas: int) -> str:
    return yaml.safe_dump(
        {
            "version": "v1",
            "flags": {"migStrategy": "none"},
            "sharing": {"timeSlicing": {"resources": [{"name": NVIDIA.resource, "replicas": replicas}]}},
        },
        sort_keys=True,
    )


def gpu_operator_values(gpu: GpuOperator, system_selector: dict[str, str], system_toleration: dict[str, str]) -> dict[str, Any]:
    gpu_toleration = _toleration_exists(NVIDIA.taint_key)
    values: dict[str, Any] = {
        "driver": {"enabled": not gpu.driver_from_ami},
        "toolkit": {"enabled": not gpu.driver_from_ami},
        # With DRA the NVIDIA DRA driver publishes the GPUs; the device plugin would hand them out a second time.
        "devicePlugin": {"enabled": not gpu.dra.enabled},
        "gfd": {"enabled": True},
        # The program's own ServiceMonitor scrapes the exporter (Accelerators.scrape_targets), created after the
        # monitoring CRDs; the operator's would scrape the same endpoints a second time.
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": False}},
        "mig": {"strategy": gpu.sharing.mig_strategy if gpu.sharing.strategy == "mig" else "none"},
        "migManager": {"enabled": gpu.sharing.strategy == "mig"},
        "daemonsets": {"tolerations": [gpu_toleration]},
        "nfd": {"enabled": True},
        # The subchart's memory limits are 4-8x its requests; the requests are raised to a working set with headroom
        # (the master's grows with the node count) and the limits set equal. The prune hook Job reuses the master's.
        # Its defaults have no CPU limit and its values schema rejects a null one, so no null here.
        "node-feature-discovery": {
            "worker": {"tolerations": [gpu_toleration, _toleration_exists(NEURON.taint_key)],
                       "resources": helm.resources("5m", "128Mi", chart_limits_cpu=False)},
            "master": {"nodeSelector": system_selector, "tolerations": [system_toleration],
                       "resources": helm.resources("100m", "512Mi", chart_limits_cpu=False)},
            "gc": {"nodeSelector": system_selector, "tolerations": [system_toleration],
                   "resources": helm.resources("10m", "128Mi", chart_limits_cpu=False)},
        },
        "operator": {
            # The operator and validator images default to the chart's appVersion, which only the published chart
            # sets to the release; pinned here so the images match the pinned chart whatever its packaging.
            "version": gpu.version,
            "nodeSelector": system_selector,
            "tolerations": [system_toleration],
            "resources": helm.resources("200m", "256Mi"),
        },
        "validator": {"version": gpu.version},
    }
    if gpu.sharing.strategy == "timeSlicing":
        values["devicePlugin"]["config"] = {"name": TIME_SLICING_CONFIG, "default": "any"}
    return values


def neuron_values(system_toleration: dict[str, str]) -> dict[str, Any]:
    """The device plugin only. Workloads request whole Neuron devices, which the plugin allocates itself; the chart's
    scheduler extension ships a kube-scheduler for an older Kubernetes minor than the cluster's (outside the
    version-skew policy), so it stays off, and node-problem-detector too."""
    return {
        "devicePlugin": {
            "enabled": True,
            "tolerations": [_toleration_exists(NEURON.taint_key), system_toleration],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        },
        "scheduler": {"enabled": False},
        "npd": {"enabled": False},
    }


def efa_device_plugin_values(efa_taints: list[dict]) -> dict[str, Any]:
    """On the EFA pools' nodes only (the label Karpenter puts on them), tolerating exactly their taints. The chart's
    container is privileged as upstream ships it: it opens /dev/infiniband and registers with the kubelet through its
    device-plugin socket, on the host network."""
    return {
        "nodeSelector": {EFA_LABEL: "true"},
        "tolerations": [_toleration_exists(t["key"]) for t in efa_taints],
        "resources": helm.resources("10m", "32Mi", chart_limits_cpu=False),
    }


def metrics_server_values(replicas: int, system_selector: dict[str, str], system_toleration: dict[str, str]) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "nodeSelector": system_selector,
        "tolerations": [system_toleration],
        "podDisruptionBudget": {"enabled": replicas > 1, "maxUnavailable": 1},
        "resources": helm.resources("100m", "200Mi", chart_limits_cpu=False),
    }


@dataclass(frozen=True)
class AcceleratorsArgs:
    config: PlatformConfig
    provider: k8s.Provider
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    depends_on: list[pulumi.Resource]


def dra_driver_values(system_selector: dict[str, str], system_toleration: dict[str, str]) -> dict[str, Any]:
    return {
        # The chart refuses GPU allocation unless told the device plugin is off (the GPU operator's values do that).
        "gpuResourcesEnabledOverride": True,
        "resources": {"gpus": {"enabled": True}, "computeDomains": {"enabled": False}},
        "resourceApiVersion": "resource.k8s.io/v1",
        "controller": {"nodeSelector": system_selector, "tolerations": [system_toleration]},
    }


class Accelerators(pulumi.ComponentResource):
    gpu_operator: k8s.helm.v3.Release
    # The NVIDIA DRA driver (its DeviceClass gpu.nvidia.com) when GPUs are claimed through DRA, else None.
    gpu_claims: Optional[pulumi.Resource]
    neuron_monitor: k8s.apps.v1.DaemonSet
    scrape_targets: list[ScrapeTarget]
    gpu_operator_namespace: str = GPU_OPERATOR_NAMESPACE

    def __init__(self, name: str, args: AcceleratorsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:accelerators:Accelerators", name, None, opts)
        ac = args.config.accelerators
        selector, toleration = args.system_node_selector, args.system_toleration
        k8s_child = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=args.depends_on)

        # The operator's DaemonSets load kernel modules and mount host paths: privileged is required.
        namespace = k8s.core.v1.Namespace(
            f"{name}-gpu-operator",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=GPU_OPERATOR_NAMESPACE,
                labels={
                    "pod-security.kubernetes.io/enforce": "privileged",
                    "app.kubernetes.io/part-of": "ml-platform",
                },
            ),
            opts=k8s_child,
        )
        operator_deps: list[pulumi.Resource] = [namespace]
        if ac.gpu_operator.sharing.strategy == "timeSlicing":
            operator_deps.append(
                k8s.core.v1.ConfigMap(
                    f"{name}-time-slicing",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=TIME_SLICING_CONFIG, namespace=namespace.metadata.name),
                    data={"any": time_slicing_config(ac.gpu_operator.sharing.time_slicing_replicas)},
                    opts=k8s_child,
                )
            )
        self.gpu_operator = helm.release(
            f"{name}-gpu-operator",
            name="gpu-operator",
            chart="gpu-operator",
            repository=GPU_OPERATOR_REPOSITORY,
            version=ac.gpu_operator.version,
            namespace=namespace.metadata.name,
            values=gpu_operator_values(ac.gpu_operator, selector, toleration),
            opts=pulumi.ResourceOptions.merge(k8s_child, pulumi.ResourceOptions(depends_on=[*args.depends_on, *operator_deps])),
        )
        self.gpu_claims: Optional[pulumi.Resource] = self._dra_driver(name, args) if ac.gpu_operator.dra.enabled else None
        helm.release(
            f"{name}-neuron",
            name="neuron",
            chart="neuron-helm-chart",
            repository=NEURON_REPOSITORY,
            version=ac.neuron.version,
            namespace="kube-system",
            values=neuron_values(toleration),
            opts=k8s_child,
        )
        efa_kinds = [KINDS[p] for p, pool in args.config.node_pools.enabled().items() if getattr(pool, "efa", False)]
        if efa_kinds:
            helm.release(
                f"{name}-efa-device-plugin",
                name="aws-efa-k8s-device-plugin",
                chart="aws-efa-k8s-device-plugin",
                repository=EKS_CHARTS_REPOSITORY,
                version=ac.efa_device_plugin.version,
                namespace="kube-system",
                values=efa_device_plugin_values([k.taint for k in efa_kinds if k.taint]),
                opts=k8s_child,
            )
        helm.release(
            f"{name}-metrics-server",
            name="metrics-server",
            chart="metrics-server",
            repository=METRICS_SERVER_REPOSITORY,
            version=ac.metrics_server.version,
            namespace="kube-system",
            values=metrics_server_values(ac.metrics_server_replicas, selector, toleration),
            opts=k8s_child,
        )
        self.neuron_monitor = self._neuron_monitor(name, ac.neuron_monitor_image, args.provider, args.depends_on)
        self.scrape_targets = [
            ScrapeTarget(
                "dcgm-exporter",
                "ServiceMonitor",
                GPU_OPERATOR_NAMESPACE,
                {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
                {
                    "port": "gpu-metrics",
                    "interval": "30s",
                    # The exporter's namespace/pod/container labels name the workload using the GPU; Prometheus keeps
                    # them as exported_namespace/exported_pod/exported_container beside the exporter pod's own.
                    "honorLabels": False,
                    # The node, from the target: the exporter's own host label changed case between releases.
                    "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": GPU_NODE_LABEL, "action": "replace"}],
                },
                self.gpu_operator,
            ),
            ScrapeTarget(
                "neuron-monitor",
                "PodMonitor",
                "kube-system",
                {"matchLabels": NEURON_MONITOR_LABELS},
                {"port": "metrics", "interval": "30s"},
                self.neuron_monitor,
            ),
        ]
        self.register_outputs({"gpuOperatorNamespace": GPU_OPERATOR_NAMESPACE})

    def _dra_driver(self, name: str, args: AcceleratorsArgs) -> k8s.helm.v3.Release:
        """The NVIDIA DRA driver: its kubelet plugin publishes each node's GPUs as ResourceSlices (privileged, as the
        device plugin it replaces), its chart the DeviceClass workloads claim from."""
        namespace = k8s.core.v1.Namespace(
            f"{name}-dra-driver",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DRA_DRIVER_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "privileged", "app.kubernetes.io/part-of": "ml-platform"}
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        dra = args.config.accelerators.gpu_operator.dra
        return helm.release(
            f"{name}-dra-driver",
            name="dra-driver-nvidia-gpu",
            chart="dra-driver-nvidia-gpu",
            repository=DRA_DRIVER_REPOSITORY,
            version=dra.version,
            namespace=DRA_DRIVER_NAMESPACE,
            values=dra_driver_values(args.system_node_selector, args.system_toleration),
            # Its kubelet plugin runs on nodes the GPU operator has labelled; the operator must not run the device plugin.
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, namespace, self.gpu_operator]),
        )

    def _neuron_monitor(self, name: str, image: str, provider: k8s.Provider, depends_on: list[pulumi.Resource]) -> k8s.apps.v1.DaemonSet:
        """Exports NeuronCore utilisation and memory for Prometheus on every Neuron node.

        The image's two halves run apart so that only one is privileged: neuron-monitor reads every Neuron device
        (Kubernetes gives device access beyond what the device plugin allocates only to privileged containers) and
        writes its JSON reports into a pipe; the exporter, which serves the network, reads the pipe unprivileged."""
        core = k8s.core.v1
        pipe_dir, pipe = "/run/neuron-monitor", "/run/neuron-monitor/reports"
        binaries = "/opt/aws/neuron/bin"  # where the image's own entrypoint runs them from
        mounts = [core.VolumeMountArgs(name="pipe", mount_path=pipe_dir), core.VolumeMountArgs(name="tmp", mount_path="/tmp")]
        small = {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}}
        restricted = core.SecurityContextArgs(
            run_as_non_root=True,
            run_as_user=65534,
            run_as_group=65534,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=core.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        )
        probe = lambda period: core.ProbeArgs(  # noqa: E731
            http_get=core.HTTPGetActionArgs(path="/", port="metrics"), period_seconds=period, timeout_seconds=5, failure_threshold=3
        )
        return k8s.apps.v1.DaemonSet(
            f"{name}-neuron-monitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="neuron-monitor", namespace="kube-system", labels=NEURON_MONITOR_LABELS),
            spec=k8s.apps.v1.DaemonSetSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=NEURON_MONITOR_LABELS),
                template=core.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=NEURON_MONITOR_LABELS),
                    spec=core.PodSpecArgs(
                        node_selector={ACCELERATOR_LABEL: NEURON.name},
                        tolerations=[core.TolerationArgs(**_toleration_exists(NEURON.taint_key))],
                        priority_class_name="system-node-critical",
                        automount_service_account_token=False,
                        security_context=core.PodSecurityContextArgs(seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")),
                        init_containers=[
                            core.ContainerArgs(
                                name="pipe",
                                image=image,
                                command=["/bin/sh", "-c", f"rm -f {pipe} && mkfifo -m 0666 {pipe}"],
                                resources=core.ResourceRequirementsArgs(**small),
                                security_context=restricted,
                                volume_mounts=mounts,
                            )
                        ],
                        containers=[
                            core.ContainerArgs(
                                name="neuron-monitor",
                                image=image,
                                # Exits when the exporter stops reading (broken pipe), and restarts with it.
                                command=["/bin/sh", "-c", f"exec {binaries}/neuron-monitor > {pipe}"],
                                resources=core.ResourceRequirementsArgs(**{"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}}),
                                # The one privileged process: it opens every /dev/neuron* device.
                                security_context=core.SecurityContextArgs(privileged=True, read_only_root_filesystem=True),
                                volume_mounts=mounts,
                            ),
                            core.ContainerArgs(
                                name="exporter",
                                image=image,
                                command=["/bin/sh", "-c", f"exec {binaries}/neuron-monitor-prometheus.py --port {NEURON_MONITOR_PORT} < {pipe}"],
                                ports=[core.ContainerPortArgs(name="metrics", container_port=NEURON_MONITOR_PORT)],
                                resources=core.ResourceRequirementsArgs(**{"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}}),
                                security_context=restricted,
                                volume_mounts=mounts,
                                startup_probe=core.ProbeArgs(
                                    http_get=core.HTTPGetActionArgs(path="/", port="metrics"), period_seconds=5, failure_threshold=24
                                ),
                                readiness_probe=probe(10),
                                liveness_probe=probe(20),
                            ),
                        ],
                        volumes=[
                            core.VolumeArgs(name="pipe", empty_dir=core.EmptyDirVolumeSourceArgs(medium="Memory", size_limit="1Mi")),
                            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="64Mi")),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=depends_on),
        )
