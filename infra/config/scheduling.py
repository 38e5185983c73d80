"""Scheduling settings: gang admission through Kueue or Volcano, JobSet."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from infra.config.base import Model
from infra.config.pins import PINS

class SchedulingConfig(Model):
    """Gang admission of training: every run is admitted whole through its team's queue, or waits."""

    gang: Literal["kueue", "volcano"] = "kueue"
    kueue_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["kueue"]
    jobset_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["jobset"]
    volcano_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["volcano"]
    # What a team may borrow from the cohort's idle quota, in percent of its own; its ResourceQuota grows by as much.
    borrowing_limit_percent: Annotated[int, Field(ge=0, le=100)] = 0
    # An admitted run whose pods are not all running by then is evicted and requeued, freeing its quota: longer
    # than an accelerator node launch plus an image pull (about 13 minutes), or runs would be evicted while starting.
    wait_for_pods_ready_minutes: Annotated[int, Field(ge=15, le=120)] = 20
    replicas: Annotated[int, Field(ge=1, le=3)] = 1
