"""How a team's run is handed to the gang scheduler (Kueue or Volcano): the labels and annotations both sides agree on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from infra.lib.conventions import TRAINING_PRIORITY

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Each team namespace's one LocalQueue. Not `default`: Kueue gives whatever names no queue in a managed namespace the
# LocalQueue of that name (LocalQueueDefaulting, GA), pods included once its pod integration admits pipeline steps,
# and would then gate every serving pod. A run names its queue; an admission policy refuses one that does not.
LOCAL_QUEUE = "team"


# Kueue refuses a change of queue once a run is admitted (jobframework validateUpdateForQueueName): a run submitted to
# another queue is a new run, replaced rather than updated (as an `up` over a stack whose queue was `default` does).
QUEUE_LABEL_PATH = f'metadata.labels["{QUEUE_LABEL}"]'


DELETION_PROPAGATION = "pulumi.com/deletionPropagationPolicy"


def queue_labels(priority: str = TRAINING_PRIORITY) -> dict[str, str]:
    """What Kueue reads on a run, or on a pipeline step's pod: the team's LocalQueue and the workload priority."""
    return {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: priority}


@dataclass(frozen=True)
class Submission:
    """How a training run of a team is handed to the gang scheduler."""

    queue: str  # the Kueue LocalQueue or Volcano Queue the run goes to
    labels: dict[str, str]  # on the Job, CronJob job template or TrainJob
    pod_annotations: dict[str, str]
    scheduler_name: Optional[str]
    # Kueue starts what it admits: runs are created suspended, and Kueue's edits on admission are not drift.
    suspend: Optional[bool]
    ignore_changes: list[str]
    replace_on_changes: list[str]

    def options(self, ignore_changes: Optional[list[str]] = None) -> pulumi.ResourceOptions:
        """`ignore_changes` in place of the Job's paths (a TrainJob has no pod template of its own). The run keeps its
        name: on a replacement the old one goes first."""
        return pulumi.ResourceOptions(ignore_changes=self.ignore_changes if ignore_changes is None else ignore_changes,
                                      replace_on_changes=self.replace_on_changes, delete_before_replace=bool(self.replace_on_changes))

    @property
    def run_annotations(self) -> dict[str, str]:
        """On the run: a Job's deletion is not awaited (pulumi.com/skipAwait), so a replacement's create must not find
        the old Job still there, deleting its pods in the foreground (the provider's default). A TrainJob's deletion
        is awaited; the annotation only spares the wait."""
        return {DELETION_PROPAGATION: "background"} if self.replace_on_changes else {}


def submission(gang: str, team: str, priority: str = TRAINING_PRIORITY) -> Submission:
    """Kueue admits a Job or a TrainJob as one workload; under Volcano a TrainJob's runtime makes its PodGroup."""
    if gang == "kueue":
        return Submission(
            LOCAL_QUEUE,
            queue_labels(priority),
            {},
            None,
            True,
            ["spec.suspend", "spec.template.spec.nodeSelector", "spec.template.spec.tolerations"],
            [QUEUE_LABEL_PATH],
        )
    return Submission(team, {}, {VOLCANO_QUEUE_ANNOTATION: team}, "volcano", None, [], [])
