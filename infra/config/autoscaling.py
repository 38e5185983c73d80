"""Platform autoscaling settings: the Prometheus adapter and the Vertical Pod Autoscaler."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from infra.config.base import Model
from infra.config.pins import PINS

class PrometheusAdapterConfig(Model):
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["prometheus-adapter"]
    # HPAs on custom metrics, and API discovery, need custom.metrics.k8s.io up: two replicas survive a node drain.
    replicas: Annotated[int, Field(ge=1, le=5)] = 2


class VerticalPodAutoscalerConfig(Model):
    # The recommender: every serving workload gets recommendations (VPA mode Off) without a pod being touched.
    enabled: bool = True
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["vertical-pod-autoscaler"]
    replicas: Annotated[int, Field(ge=1, le=5)] = 2
    # Opt-in, for workloads whose vpaUpdateMode is not Off: the updater applies recommendations to running pods
    # (eviction or in-place resize), the admission controller sets the recommended requests on new pods.
    updater: bool = False
    admission_controller: bool = False


class AutoscalingConfig(Model):
    prometheus_adapter: PrometheusAdapterConfig = PrometheusAdapterConfig()
    vertical_pod_autoscaler: VerticalPodAutoscalerConfig = VerticalPodAutoscalerConfig()
