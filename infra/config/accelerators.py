"""Accelerator software settings: the NVIDIA GPU operator (sharing, DRA), Neuron, metrics-server."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import HelmChart, Model
from infra.config.pins import PINS

# EC2 families whose GPUs can be partitioned with MIG (A100 in p4d/p4de, H100 and H200 in p5/p5e/p5en, B200 in
# p6-b200; NVIDIA MIG User Guide, "Supported GPUs"). A10G, L4, L40S, T4 and V100 cannot.
MIG_FAMILIES = frozenset({"p4d", "p4de", "p5", "p5e", "p5en", "p6-b200"})


class GpuSharing(Model):
    strategy: Literal["none", "timeSlicing", "mig"] = "none"
    time_slicing_replicas: Annotated[int, Field(ge=2, le=48)] = 4
    # single: every MIG slice is advertised as nvidia.com/gpu, which the queues, quotas and workloads count. mixed
    # advertises nvidia.com/mig-<profile> resources that nothing in the platform requests.
    mig_strategy: Literal["single", "mixed"] = "single"
    # The MIG Manager configuration the nvidia pool's nodes are partitioned into (the node label nvidia.com/mig.config):
    # a name from its configuration for the GPU model, e.g. all-1g.10gb on 80 GB A100/H100, all-1g.5gb on 40 GB A100.
    mig_config: Optional[Annotated[str, Field(pattern=r"^all-[a-z0-9][a-z0-9.-]*$")]] = None

    @model_validator(mode="after")
    def _mig(self) -> "GpuSharing":
        if self.strategy == "mig":
            if self.mig_strategy != "single":
                raise ValueError("migStrategy mixed advertises nvidia.com/mig-<profile> resources that no queue, quota or workload of the platform requests; use single")
            if self.mig_config is None:
                raise ValueError("migConfig is required with strategy mig: the MIG Manager configuration to partition the GPUs into, e.g. all-1g.10gb")
        elif self.mig_config is not None:
            raise ValueError(f"migConfig is set but strategy is {self.strategy!r}: set strategy: mig, or drop migConfig")
        return self


class NvidiaDra(Model):
    """GPUs through Dynamic Resource Allocation (resource.k8s.io/v1): the NVIDIA DRA driver publishes them, workloads
    claim them with a ResourceClaimTemplate, and the GPU operator's device plugin steps aside (the two cannot share
    a node)."""

    enabled: bool = False
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["dra-driver-nvidia-gpu"]


class GpuOperator(Model):
    version: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")] = PINS["gpu-operator"]
    # The AL2023 NVIDIA AMIs ship the driver and container toolkit.
    driver_from_ami: bool = True
    sharing: GpuSharing = GpuSharing()
    dra: NvidiaDra = NvidiaDra()

    @model_validator(mode="after")
    def _dra_alone(self) -> "GpuOperator":
        if self.dra.enabled and self.sharing.strategy != "none":
            raise ValueError(f"dra.enabled with sharing.strategy {self.sharing.strategy!r}: GPU sharing is the device plugin's, which DRA replaces")
        return self


class AcceleratorsConfig(Model):
    gpu_operator: GpuOperator = GpuOperator()
    neuron: HelmChart = HelmChart(version=PINS["neuron-helm-chart"])
    # Installed when a pool turns efa on.
    efa_device_plugin: HelmChart = HelmChart(version=PINS["aws-efa-k8s-device-plugin"])
    neuron_monitor_image: Annotated[str, Field(pattern=r"^[a-z0-9./-]+:[0-9][A-Za-z0-9._-]*$")] = "public.ecr.aws/neuron/neuron-monitor:1.1.0"
    metrics_server: HelmChart = HelmChart(version=PINS["metrics-server"])
    metrics_server_replicas: Annotated[int, Field(ge=1, le=5)] = 2
