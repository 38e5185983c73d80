"""What a team namespace runs outside Kueue, at its peak: the room its ClusterQueue leaves in the ResourceQuota.

The namespace's ResourceQuota counts every pod; Kueue admits only Jobs, JobSets and TrainJobs against the team's ClusterQueue.
Serving pods (with their Istio sidecars, and one extra pod per version while it rolls out), the data-prep consumers
(the same way), a study's Katib suggestion service and trial metrics collectors, and whatever the team
declares in `quota.outsideQueue` are not Kueue's to admit: the queue's quota is the namespace's minus these, so a run
Kueue admits is never refused by the quota (and evicted and requeued over and over by waitForPodsReady).
Units: CPU in millicores, memory in MiB, accelerators in devices (or NeuronCores).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from infra.lib.accelerators import KINDS, NEURON, NVIDIA

if TYPE_CHECKING:  # infra.config validates against this module
    from infra.config import PlatformConfig, ServingWorkload, TeamConfig

# Istio's sidecar in every serving pod (components/mesh.py sets it in istiod's values; a test holds them equal).
SIDECAR_CPU_MILLI = 100
SIDECAR_MEMORY_MIB = 128
# The init container that waits for a served model (components/workloads.py, its SMALL resources).
MODEL_WAIT_CPU_MILLI = 100
MODEL_WAIT_MEMORY_MIB = 256
# The Job that compiles a served model for Neuron (components/workloads.py): Kueue admits it like a training run.
COMPILE_CPU = "2"
COMPILE_MEMORY_GIB = 8
COMPILE_NEURON_CORES = 1
# An LLM pool's endpoint picker (components/llm_serving.py).
EPP_CPU_MILLI = 500
EPP_MEMORY_MIB = 1024
# llm-d's routing sidecar in each decode pod of a disaggregated LLM workload: it proxies every request and stream.
PD_SIDECAR_CPU_MILLI = 250
PD_SIDECAR_MEMORY_MIB = 256
# A Deployment rolls out one pod over its replicas (maxSurge: 1).
ROLLOUT_SURGE = 1
RESOURCES = ("cpu", "memory", NVIDIA.resource, NEURON.resource)


def millicores(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else math.ceil(float(cpu) * 1000)


def serving_pod(w: "ServingWorkload", waits_for_model: bool) -> dict[str, int]:
    """One serving pod as the ResourceQuota counts it: the larger of its containers' sum and its init container,
    plus the sidecar (the injector adds it after Kueue or anyone else saw the template)."""
    cpu, memory = millicores(w.resources.cpu), math.ceil(w.resources.memory_gib * 1024)
    if waits_for_model:
        cpu, memory = max(cpu, MODEL_WAIT_CPU_MILLI), max(memory, MODEL_WAIT_MEMORY_MIB)
    pod = {"cpu": cpu + SIDECAR_CPU_MILLI, "memory": memory + SIDECAR_MEMORY_MIB, NVIDIA.resource: 0, NEURON.resource: 0}
    resource = KINDS[w.accelerator].resource
    if resource:
        pod[resource] = w.accelerator_count
    return pod


# What Katib runs beside a study's trials (components/katib.py): its suggestion service, a Deployment in the team's
# namespace, and the metrics collector it injects into each trial pod after Kueue admitted the trial's Job.
KATIB_SUGGESTION_CPU, KATIB_SUGGESTION_MEMORY_MIB = "250m", 512
KATIB_COLLECTOR_CPU, KATIB_COLLECTOR_MEMORY_MIB = "50m", 64


def outside_queue(cfg: "PlatformConfig", team: "TeamConfig") -> dict[str, int]:
    """The team's peak outside Kueue: its serving workloads at their maximum replicas plus a rollout's extra pod per
    version, its studies' suggestion services and trials' metrics collectors, and the team's own `quota.outsideQueue`."""
    extra = team.quota.outside_queue
    total = {"cpu": extra.cpu * 1000, "memory": extra.memory_gib * 1024, NVIDIA.resource: extra.nvidia_gpus, NEURON.resource: extra.neuron_cores}
    for study in cfg.training.katib.studies if cfg.training.enabled else []:
        if study.team == team.name:
            total["cpu"] += millicores(KATIB_SUGGESTION_CPU) + study.parallel_trial_count * millicores(KATIB_COLLECTOR_CPU)
            total["memory"] += KATIB_SUGGESTION_MEMORY_MIB + study.parallel_trial_count * KATIB_COLLECTOR_MEMORY_MIB
    for w in cfg.workloads:
        if w.team != team.name or w.kind != "serving":
            continue
        for track in w.tracks():
            pod = serving_pod(w, track.model is not None)
            for resource in RESOURCES:
                total[resource] += (track.max_replicas + ROLLOUT_SURGE) * pod[resource]
    for w in cfg.llm.workloads:
        if w.team != team.name:
            continue
        # Engine pods (a replica is `pipeline` of them) with their sidecars (decode pods also with llm-d's routing
        # sidecar), each version's prefill pods when disaggregated, and each version's endpoint picker.
        engine = {"cpu": millicores(w.resources.cpu) + SIDECAR_CPU_MILLI, "memory": math.ceil(w.resources.memory_gib * 1024) + SIDECAR_MEMORY_MIB,
                  NVIDIA.resource: 0, NEURON.resource: 0}
        engine[KINDS[w.accelerator].resource] = w.accelerators_per_pod()
        decode = {**engine, "cpu": engine["cpu"] + PD_SIDECAR_CPU_MILLI, "memory": engine["memory"] + PD_SIDECAR_MEMORY_MIB} if w.disaggregation else engine
        for _, _, _, weight, _, max_replicas in w.tracks():
            prefill = w.prefill_replicas(weight)
            for resource in RESOURCES:
                total[resource] += (max_replicas + ROLLOUT_SURGE) * w.parallelism.pipeline * decode[resource]
                total[resource] += (prefill + ROLLOUT_SURGE if prefill else 0) * engine[resource]
            pickers = w.inference_pool.endpoint_picker.replicas + ROLLOUT_SURGE
            total["cpu"] += pickers * (EPP_CPU_MILLI + SIDECAR_CPU_MILLI)
            total["memory"] += pickers * (EPP_MEMORY_MIB + SIDECAR_MEMORY_MIB)
    streams = cfg.streaming.teams.get(team.name)
    if streams is not None and streams.data_prep is not None:
        # The data-prep consumers (components/streaming.py): a Deployment with sidecars, outside Kueue like serving.
        dp = streams.data_prep
        total["cpu"] += (dp.max_replicas + ROLLOUT_SURGE) * (millicores(dp.cpu) + SIDECAR_CPU_MILLI)
        total["memory"] += (dp.max_replicas + ROLLOUT_SURGE) * (dp.memory_mib + SIDECAR_MEMORY_MIB)
    return total


def training_run(w) -> dict[str, int]:
    """What one training run asks Kueue for at once: every worker's pod."""
    cpu, memory = millicores(w.resources.cpu), math.ceil(w.resources.memory_gib * 1024)
    run = {"cpu": w.max_pods * cpu, "memory": w.max_pods * memory, NVIDIA.resource: 0, NEURON.resource: 0}
    resource = KINDS[w.accelerator].resource
    if resource:
        run[resource] = w.max_pods * w.accelerator_count
    return run


def compile_run() -> dict[str, int]:
    """What one Neuron compile Job asks Kueue for."""
    return {"cpu": millicores(COMPILE_CPU), "memory": COMPILE_MEMORY_GIB * 1024, NVIDIA.resource: 0, NEURON.resource: COMPILE_NEURON_CORES}


def with_borrowing(nominal: int, percent: int) -> int:
    """A team's quota plus what it may borrow from the cohort's idle quota (scheduling.borrowingLimitPercent)."""
    return nominal + math.ceil(nominal * percent / 100)


def namespace_quota(team: "TeamConfig", borrowing_percent: int) -> dict[str, int]:
    """The team's ResourceQuota in these units: its quota grown by what it may borrow, in whole cores, GiB and devices."""
    q, unit = team.quota, {"cpu": 1000, "memory": 1024}
    whole = {"cpu": q.cpu, "memory": q.memory_gib, NVIDIA.resource: q.nvidia_gpus, NEURON.resource: q.neuron_cores}
    return {r: with_borrowing(n, borrowing_percent) * unit.get(r, 1) for r, n in whole.items()}


def queue_quota(cfg: "PlatformConfig", team: "TeamConfig") -> dict[str, int]:
    """What Kueue may admit for the team of its own quota: the quota less what runs outside the queue (nothing, where
    serving alone may take it all)."""
    quota, outside = namespace_quota(team, 0), outside_queue(cfg, team)
    return {r: max(0, quota[r] - outside[r]) for r in RESOURCES}


def quantity(resource: str, amount: int) -> str:
    """A Kubernetes quantity of these units, whole cores and GiB where they are whole."""
    if resource == "cpu":
        return str(amount // 1000) if amount % 1000 == 0 else f"{amount}m"
    if resource == "memory":
        return f"{amount // 1024}Gi" if amount % 1024 == 0 else f"{amount}Mi"
    return str(amount)
