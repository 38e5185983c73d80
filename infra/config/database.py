"""The platform's database: one Aurora MySQL Serverless v2 cluster in the private subnets, shared by the ML layer
(each consumer its own database on it), and the operator that brings its AWS-managed credentials into the cluster."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from infra.config.base import HelmChart, Model
from infra.config.pins import PINS

# Aurora Serverless v2 scales in half ACUs between 0 and 256 (Aurora user guide, "Aurora Serverless v2 capacity");
# 0 pauses the cluster when idle, which engine 3.08 and later support.
ACU_MIN, ACU_MAX = 0.0, 256.0


def _half_acus(value: float) -> float:
    if value * 2 != int(value * 2):
        raise ValueError(f"{value} is not a multiple of 0.5 ACU")
    return value


Acus = Annotated[float, Field(ge=ACU_MIN, le=ACU_MAX)]


class SecretSync(Model):
    """External Secrets Operator: keeps Kubernetes Secrets in step with the Secrets Manager secrets they mirror."""
    chart: HelmChart = HelmChart(version=PINS["external-secrets"])
    # How often a mirrored Secret is compared with Secrets Manager: a rotated password reaches the cluster this late.
    refresh_interval: Annotated[str, Field(pattern=r"^\d+(m|h)$")] = "1h"


class DatabaseConfig(Model):
    enabled: bool = True
    # An Aurora MySQL 3 LTS release (compatible with MySQL 8.0.42); minor upgrades stay manual, as AWS advises for LTS.
    engine_version: Annotated[str, Field(pattern=r"^8\.0\.mysql_aurora\.3\.\d{2}\.\d+$")] = "8.0.mysql_aurora.3.10.0"
    min_capacity: Acus = 0.5
    max_capacity: Acus = 4.0
    # Instances: one writer, and readers in other zones for a failover that does not wait for a new instance.
    instances: Annotated[int, Field(ge=1, le=3)] = 1
    deletion_protection: bool = False
    backup_retention_days: Annotated[int, Field(ge=1, le=35)] = 7
    skip_final_snapshot: bool = True
    # Days between rotations of the RDS-managed master password in Secrets Manager.
    rotation_days: Annotated[int, Field(ge=1, le=365)] = 30
    secret_sync: SecretSync = SecretSync()

    @model_validator(mode="after")
    def _capacity(self) -> "DatabaseConfig":
        for key in ("min_capacity", "max_capacity"):
            _half_acus(getattr(self, key))
        if self.max_capacity < max(self.min_capacity, 1.0):
            raise ValueError(
                f"maxCapacity {self.max_capacity:g} is below {max(self.min_capacity, 1.0):g}: it must be at least minCapacity and at least 1 ACU"
            )
        return self
