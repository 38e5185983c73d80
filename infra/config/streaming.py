"""Streaming ingestion settings: an Amazon MSK cluster (Serverless or provisioned) and each team's topics."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from infra.config.base import CpuQuantity, DnsLabel, ImageRef, Model, RetentionDays


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


class DataPrep(Model):
    """The data-prep consumer (examples/data-prep): one Deployment in the team's namespace reading one of its topics
    as one of its consumer groups, writing prepared records to a training workload's data claim, scaled on lag."""

    image: ImageRef
    topic: KafkaName
    consumer_group: KafkaName
    # The claim it writes to: the data claim (`<workload>-data`) of one of the team's training workloads.
    output_claim: DnsLabel
    min_replicas: Annotated[int, Field(ge=1, le=120)] = 1
    # A consumer beyond the topic's partition count would get no partition: at most the partitions.
    max_replicas: Annotated[int, Field(ge=1, le=120)] = 3
    # Records behind per consumer the autoscaler aims at (the HPA's AverageValue on kafka_consumer_lag).
    lag_per_replica: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    cpu: CpuQuantity = "250m"
    memory_mib: Annotated[int, Field(ge=64, le=65536)] = 512


class TeamStreaming(Model):
    topics: Annotated[list[Topic], Field(min_length=1)]
    # Consumer groups the team's role may join; each named `<team>.<group>` on the cluster.
    consumer_groups: list[KafkaName] = []
    # The service account in the team's namespace whose pods get the team's Kafka role (EKS Pod Identity).
    service_account: DnsLabel = "kafka-client"
    data_prep: Optional[DataPrep] = None

    @model_validator(mode="after")
    def _unique(self) -> "TeamStreaming":
        names = [t.name for t in self.topics]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"topics names {dup} more than once")
        return self

    @model_validator(mode="after")
    def _data_prep(self) -> "TeamStreaming":
        dp = self.data_prep
        if dp is None:
            return self
        topics = {t.name: t for t in self.topics}
        if dp.topic not in topics:
            raise ValueError(f"dataPrep.topic {dp.topic!r} is not one of the team's topics {sorted(topics)}")
        if dp.consumer_group not in self.consumer_groups:
            raise ValueError(f"dataPrep.consumerGroup {dp.consumer_group!r} is not one of consumerGroups {self.consumer_groups}")
        if dp.max_replicas > topics[dp.topic].partitions:
            raise ValueError(f"dataPrep.maxReplicas {dp.max_replicas} is over topic {dp.topic}'s {topics[dp.topic].partitions} partitions: "
                             "the extra consumers would get no partition")
        if dp.min_replicas > dp.max_replicas:
            raise ValueError(f"dataPrep.minReplicas {dp.min_replicas} is over maxReplicas {dp.max_replicas}")
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
