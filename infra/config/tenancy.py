"""Team settings: who a team is, its quota and its container defaults."""
from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from infra.config.base import CpuQuantity, DnsLabel, IamRoleArn, Model

class OutsideQueue(Model):
    """What the team runs in its namespace outside Kueue besides the platform's serving workloads (which are counted
    from their own settings): pods of its own Deployments, notebooks, sidecars of its own Jobs. Kueue leaves it free."""

    cpu: Annotated[int, Field(ge=0)] = 0
    memory_gib: Annotated[int, Field(ge=0)] = 0
    nvidia_gpus: Annotated[int, Field(ge=0)] = 0
    neuron_cores: Annotated[int, Field(ge=0)] = 0


class TeamQuota(Model):
    cpu: Annotated[int, Field(ge=1)] = 32
    memory_gib: Annotated[int, Field(ge=1)] = 128
    nvidia_gpus: Annotated[int, Field(ge=0)] = 0
    neuron_cores: Annotated[int, Field(ge=0)] = 0
    pvcs: Annotated[int, Field(ge=0)] = 20
    storage_gib: Annotated[int, Field(ge=0)] = 1000
    # Room the team's ClusterQueue leaves in this quota for pods Kueue does not admit (infra/lib/headroom.py).
    outside_queue: OutsideQueue = OutsideQueue()


class ContainerDefaults(Model):
    cpu: CpuQuantity = "250m"
    memory_mib: Annotated[int, Field(ge=16)] = 512


class TeamConfig(Model):
    name: DnsLabel
    # Team members assume this role; an access entry maps it to the team's Kubernetes group.
    iam_role_arn: IamRoleArn
    quota: TeamQuota = TeamQuota()
    container_defaults: ContainerDefaults = ContainerDefaults()
    # The team's own receiver: alerts from its namespace go there too (an AlertmanagerConfig in the namespace).
    alert_receiver: Optional[DnsLabel] = None
