"""Logging settings: Fluent Bit, CloudWatch Logs retention, the opt-in OpenSearch domain."""
from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import IamRoleArn, Model, RetentionDays
from infra.config.pins import PINS

class OpenSearchConfig(Model):
    """The opt-in search sink: an Amazon OpenSearch Service domain inside the VPC (Dashboards reachable only from there)."""

    enabled: bool = False
    engine_version: Annotated[str, Field(pattern=r"^OpenSearch_\d+\.\d+$")] = "OpenSearch_2.19"
    instance_type: Annotated[str, Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+\.search$")] = "r6g.large.search"
    # Data nodes, spread evenly over zoneCount availability zones.
    instance_count: Annotated[int, Field(ge=1, le=80)] = 3
    zone_count: Literal[1, 2, 3] = 3
    # Three dedicated cluster managers keep the domain available through a zone outage; None runs without.
    dedicated_manager_type: Optional[Annotated[str, Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+\.search$")]] = "m6g.large.search"
    volume_gib: Annotated[int, Field(ge=10, le=16000)] = 100
    # Days a daily log index is kept: its retention (ISM) policy deletes it then, so the domain does not fill.
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 14
    # Gets full access inside OpenSearch (all_access, security_manager); required when enabled.
    admin_role_arn: Optional[IamRoleArn] = None
    # VPC domains need AWSServiceRoleForAmazonOpenSearchService; an account has it once, creating it twice fails.
    create_service_linked_role: bool = False

    @model_validator(mode="after")
    def _shape(self) -> "OpenSearchConfig":
        if self.enabled and self.admin_role_arn is None:
            raise ValueError("openSearch.adminRoleArn is required when openSearch.enabled: the role that administers the domain")
        if self.instance_count % self.zone_count:
            raise ValueError(f"openSearch.instanceCount {self.instance_count} must be a multiple of zoneCount {self.zone_count}, one share per zone")
        return self


class LoggingConfig(Model):
    """Container logs to CloudWatch Logs (always) and OpenSearch (opt-in), shipped by Fluent Bit on every node."""

    fluent_bit_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["fluent-bit"]
    retention_days: RetentionDays = 30
    # Fluent Bit buffers on the node's disk while a sink is down: this long at the rate below loses nothing.
    outage_tolerance_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    # Typical container log volume of one node; sizes the buffer and the cost estimate of log ingestion.
    node_log_rate_kib_per_second: Annotated[int, Field(ge=1, le=10240)] = 32
    open_search: OpenSearchConfig = OpenSearchConfig()

    @property
    def buffer_mib(self) -> int:
        return math.ceil(self.outage_tolerance_minutes * 60 * self.node_log_rate_kib_per_second / 1024)
