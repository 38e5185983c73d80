"""Accelerator software settings: the NVIDIA GPU operator (sharing, DRA), Neuron, metrics-server."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from infra.config.base import HelmChart, Model
from infra.config.pins import PINS

class GpuSharing(Model):
    strategy: Literal["none", "timeSlicing", "mig"] = "none"
    time_slicing_replicas: Annotated[int, Field(ge=2, le=48)] = 4
    mig_strategy: Literal["single", "mixed"] = "single"


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
