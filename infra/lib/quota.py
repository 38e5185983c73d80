"""A team's compute quota: the one arithmetic the namespace's ResourceQuota and the gang scheduler's queues share."""
from __future__ import annotations

import math

from infra.config import TeamConfig
from infra.lib.accelerators import NEURON, NVIDIA


def with_borrowing(nominal: int, percent: int) -> int:
    """A team's quota plus what it may borrow from the cohort's idle quota (scheduling.borrowingLimitPercent)."""
    return nominal + math.ceil(nominal * percent / 100)


def nominal_quota(team: TeamConfig) -> dict[str, int]:
    """The team's compute quota by resource (memory in GiB): the namespace's, Kueue's and Volcano's nominal share."""
    q = team.quota
    return {"cpu": q.cpu, "memory": q.memory_gib, NVIDIA.resource: q.nvidia_gpus, NEURON.resource: q.neuron_cores}


def quantity(resource: str, amount: int) -> str:
    return f"{amount}Gi" if resource == "memory" else str(amount)
