"""How a team's run is handed to the gang scheduler (Kueue or Volcano): the labels and annotations both sides agree on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from infra.lib.conventions import TRAINING_PRIORITY

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Kueue gives a Job of a managed namespace without the queue label the LocalQueue named `default`, when one exists
# (its jobframework defaulting): the team's queue has that name, so no team Job is suspended for want of a label.
LOCAL_QUEUE = "default"


@dataclass(frozen=True)
class Submission:
    """How a training run of a team is handed to the gang scheduler."""

    labels: dict[str, str]  # on the Job, CronJob job template or TrainJob
    pod_annotations: dict[str, str]
    scheduler_name: Optional[str]
    # Kueue starts what it admits: runs are created suspended, and Kueue's edits on admission are not drift.
    suspend: Optional[bool]
    ignore_changes: list[str]


def submission(gang: str, team: str, priority: str = TRAINING_PRIORITY) -> Submission:
    """Kueue admits a Job or a TrainJob as one workload; under Volcano a TrainJob's runtime makes its PodGroup."""
    if gang == "kueue":
        return Submission(
            {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: priority},
            {},
            None,
            True,
            ["spec.suspend", "spec.template.spec.nodeSelector", "spec.template.spec.tolerations"],
        )
    return Submission({}, {VOLCANO_QUEUE_ANNOTATION: team}, "volcano", None, [])
