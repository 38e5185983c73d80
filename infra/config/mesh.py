"""Mesh settings: Istio, the load-balancer controller and the Gateway."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import Cidr, Model
from infra.config.pins import PINS

class GatewayConfig(Model):
    scheme: Literal["internet-facing", "internal"] = "internal"
    # Who may reach the listener; defaults to the VPC for internal, everyone for internet-facing.
    allowed_cidrs: Optional[list[Cidr]] = None
    # An ACM certificate: the NLB terminates TLS on 443.
    certificate_arn: Optional[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")]] = None
    hosts: Annotated[list[str], Field(min_length=1)] = ["*"]
    min_replicas: Annotated[int, Field(ge=1, le=20)] = 2
    max_replicas: Annotated[int, Field(ge=1, le=50)] = 5

    @model_validator(mode="after")
    def _replicas(self) -> "GatewayConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        return self


class MeshConfig(Model):
    istio_version: Annotated[str, Field(pattern=r"^1\.\d+\.\d+$")] = PINS["istio"]
    istiod_replicas: Annotated[int, Field(ge=1, le=5)] = 1
    load_balancer_controller_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["aws-load-balancer-controller"]
    gateway: GatewayConfig = GatewayConfig()
