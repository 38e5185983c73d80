"""Streaming ingestion settings: an Amazon MSK cluster (Serverless or provisioned) and each team's topics."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from infra.config.base import DnsLabel, Model, RetentionDays


def _kafka_name(value: str) -> str:
    # Kafka refuses "." and ".." (they are directory names on the brokers).
    if value in (".", ".."):
        raise ValueError("'.' and '..' are not valid Kafka names")
    return value


# Kafka's legal topic characters; the platform prefixes `<team>.`, so the rest stays within Kafka's 249.
KafkaName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9._-]{1,200}$"), AfterValidator(_kafka_name)]


class Topic(Model):
    name: KafkaName
    # MSK Serverless allows at most 120 partitions per topic (MSK Serverless quotas).
    partitions: Annotated[int, Field(ge=1, le=120)] = 3
    # One hour to one year of retention.
    retention_hours: Annotated[int, Field(ge=1, le=8760)] = 168


class TeamStreaming(Model):
    topics: Annotated[list[Topic], Field(min_length=1)]
    # Consumer groups the team's role may join; each named `<team>.<group>` on the cluster.
    consumer_groups: list[KafkaName] = []
    # The service account in the team's namespace whose pods get the team's Kafka role (EKS Pod Identity).
    service_account: DnsLabel = "kafka-client"

    @model_validator(mode="after")
    def _unique(self) -> "TeamStreaming":
        names = [t.name for t in self.topics]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"topics names {dup} more than once")
        return self


class ProvisionedMsk(Model):
    kafka_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.(\d+|x)(\.kraft)?$")] = "3.9.x"
    instance_type: Annotated[str, Field(pattern=r"^kafka\.[a-z0-9]+\.[a-z0-9]+$")] = "kafka.m7g.large"
    brokers_per_zone: Annotated[int, Field(ge=1, le=10)] = 1
    # Storage per broker at creation and the most Application Auto Scaling may grow it to (MSK: 1 to 16384 GiB).
    volume_gib: Annotated[int, Field(ge=1, le=16384)] = 100
    max_volume_gib: Annotated[int, Field(ge=1, le=16384)] = 1000
    # Grow storage when brokers' disks pass this utilisation (percent).
    storage_target_percent: Annotated[int, Field(ge=10, le=90)] = 60
    log_retention_days: RetentionDays = 30

    @model_validator(mode="after")
    def _volumes(self) -> "ProvisionedMsk":
        if self.max_volume_gib < self.volume_gib:
            raise ValueError(f"maxVolumeGib {self.max_volume_gib} is below volumeGib {self.volume_gib}")
        return self


def broker_zones(region: str, private_subnets: int) -> int:
    """Zones a provisioned cluster's brokers spread over: two or three subnets in distinct zones, two only in
    us-west-1 (MSK developer guide, "Create an MSK Provisioned cluster")."""
    return min(2 if region == "us-west-1" else 3, private_subnets)


class StreamingConfig(Model):
    enabled: bool = False
    mode: Literal["serverless", "provisioned"] = "serverless"
    provisioned: ProvisionedMsk = ProvisionedMsk()
    teams: dict[DnsLabel, TeamStreaming] = {}
