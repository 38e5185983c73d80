"""Network settings: the VPC, its subnets and flow logs."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import Cidr, Model, RetentionDays

class FlowLogs(Model):
    # Every VPC keeps a record of its traffic for incident response; retention is the cost lever.
    enabled: bool = True
    retention_days: RetentionDays = 30


class NetworkConfig(Model):
    cidr: Cidr = "10.0.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    availability_zones: Optional[list[str]] = None
    nat_gateways: Literal["single", "perAz"] = "perAz"
    private_subnet_prefix: Annotated[int, Field(ge=16, le=26)] = 19
    public_subnet_prefix: Annotated[int, Field(ge=16, le=28)] = 24
    flow_logs: FlowLogs = FlowLogs()
    # ECR's API and registry (dkr) interface endpoints in every private subnet: nodes pull images from ECR (layers from
    # S3 through the S3 gateway endpoint) without crossing the NAT gateways.
    ecr_endpoints: bool = True

    @model_validator(mode="after")
    def _subnets_fit(self) -> "NetworkConfig":
        if self.availability_zones is not None and len(self.availability_zones) != self.az_count:
            raise ValueError(f"availabilityZones lists {len(self.availability_zones)} zones but azCount is {self.az_count}")
        plan_subnets(self)
        return self


def plan_subnets(net: NetworkConfig) -> tuple[list[str], list[str]]:
    """Carves `az_count` private then `az_count` public subnets out of the VPC CIDR, largest first."""
    vpc = ipaddress.IPv4Network(net.cidr)
    for key, prefix in (("privateSubnetPrefix", net.private_subnet_prefix), ("publicSubnetPrefix", net.public_subnet_prefix)):
        if prefix <= vpc.prefixlen:
            raise ValueError(f"{key} /{prefix} must be longer than the VPC CIDR /{vpc.prefixlen}")
    free = [vpc]
    allocated: dict[str, list[str]] = {"private": [], "public": []}
    for kind, prefix in (("private", net.private_subnet_prefix), ("public", net.public_subnet_prefix)):
        for _ in range(net.az_count):
            block = next((b for b in free if b.prefixlen <= prefix), None)
            if block is None:
                raise ValueError(
                    f"cidr {net.cidr} is too small for {net.az_count} private /{net.private_subnet_prefix} and "
                    f"{net.az_count} public /{net.public_subnet_prefix} subnets; widen it or lengthen the subnet prefixes"
                )
            free.remove(block)
            first, *rest = block.subnets(new_prefix=prefix)
            free = sorted(free + list(rest), key=lambda b: (b.network_address, b.prefixlen))
            allocated[kind].append(str(first))
    return allocated["private"], allocated["public"]
