"""Observability settings: kube-prometheus-stack and the objectives its alerts watch."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from infra.config.base import Model
from infra.config.pins import PINS

class ObservabilityConfig(Model):
    kube_prometheus_stack_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["kube-prometheus-stack"]
    prometheus_retention: Annotated[str, Field(pattern=r"^\d+[dhw]$")] = "15d"
    prometheus_volume_gib: Annotated[int, Field(ge=10, le=16000)] = 100
    prometheus_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    alertmanager_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    grafana_volume_gib: Annotated[int, Field(ge=1, le=1000)] = 10
    latency_objective_ms: Annotated[int, Field(ge=1)] = 500
    error_rate_objective: Annotated[float, Field(gt=0, lt=1)] = 0.05
    gpu_idle_minutes: Annotated[int, Field(ge=10)] = 60
