"""How long a serving pod takes to become Ready on a fresh node, per node pool: node launch + image pull + weights.

Computed from the synthesized graph, like the critical path: the pools' NodePools and EC2NodeClasses, the model
store's file system, and the serving Deployments that mount a team model store. Sources:

- node launch and image pull: `infra/lib/timing.py` (the figures the engine's awaits are sized from);
- parallel pull: the EC2NodeClass turns on nodeadm's FastImagePull gate (SOCI parallel pull and unpack). nodeadm
  applies it only on nodes with at least 4 vCPUs and 7 GiB (awslabs/amazon-eks-ami,
  nodeadm/internal/containerd/config.go, UseSOCISnapshotter), so a pool counts it only when all its instance types
  qualify. The gain counted is the low end of the range the SOCI project states for parallel pull over the default
  sequential pull, "14-50% faster" (awslabs/soci-snapshotter, docs/config.md, `parallel_pull_as_fallback`);
- weights: a serving pod reads its model from the team's store before it is Ready; its memory request bounds the
  weights it can hold, so the model counts that many GiB, read at the store's per-client throughput: Amazon EFS
  Elastic throughput 1,500 MiB/s per client ("Amazon EFS performance specifications"); Bursting 100 MiB/s, the burst
  rate of a file system under 1 TiB (AWS Knowledge Center, "What throughput modes are available in EFS"). A team store
  on S3 (its claim's volume is the Mountpoint driver's) is read at the throughput Mountpoint aims for when it does not
  know the instance's network bandwidth, 10 Gbps (awslabs/mountpoint-s3 doc/CONFIGURATION.md at 1.22.3, "Configuring
  Mountpoint performance"; on EC2 it aims for the instance's bandwidth), after its Mountpoint Pod starts
  (`timing.MOUNTPOINT_POD`).

A pool with static (warm) nodes also gets the time for a pod placed on one of them: image pull and weights only.
"""
from __future__ import annotations

from typing import Any, Optional

from infra.lib import timing
from infra.lib.conventions import MODEL_STORE_CLAIM
from policies.rules.base import quantity
from policies.rules.cost import BUDGET, PRICE_TABLE_TAG, budget_settings, price_table

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
PV, PVC = "kubernetes:core/v1:PersistentVolume", "kubernetes:core/v1:PersistentVolumeClaim"
S3_DRIVER = "s3.csi.aws.com"
POOL_LABEL = "ml-platform.io/pool"

PARALLEL_PULL_GAIN = 0.14
FAST_PULL_FLOOR = (4, 7.0)  # vCPUs, GiB
EFS_CLIENT_MIBPS = {"elastic": 1500, "bursting": 100}
S3_CLIENT_MIBPS = round(10e9 / 8 / 2**20)


def _instance_types(spec: dict) -> list[str]:
    for r in spec["template"]["spec"].get("requirements") or []:
        if r["key"] == "node.kubernetes.io/instance-type" and r["operator"] == "In":
            return list(r["values"])
    return []


def _parallel_pull(node_class: dict, types: list[str], instances: dict[str, dict]) -> bool:
    if "FastImagePull: true" not in str((node_class.get("spec") or {}).get("userData") or ""):
        return False
    floor_cpu, floor_gib = FAST_PULL_FLOOR
    return bool(types) and all(t in instances and instances[t]["vcpu"] >= floor_cpu and instances[t]["memoryGib"] >= floor_gib for t in types)


def _s3_stores(records: list[dict]) -> set[str]:
    """Namespaces whose model-store claim binds a Mountpoint (S3) volume."""
    s3_volumes = {r["inputs"]["metadata"]["name"] for r in records if r["type"] == PV and (r["inputs"]["spec"].get("csi") or {}).get("driver") == S3_DRIVER}
    return {
        r["inputs"]["metadata"]["namespace"] for r in records
        if r["type"] == PVC and r["inputs"]["metadata"]["name"] == MODEL_STORE_CLAIM and r["inputs"]["spec"].get("volumeName") in s3_volumes
    }


def _serving(records: list[dict]) -> dict[str, tuple[str, float]]:
    """Per pool, the serving Deployment (or InferenceService predictor) reading the most weights from a model store:
    (namespace/name, GiB)."""
    largest: dict[str, tuple[str, float]] = {}
    for r in records:
        if r["type"] == DEPLOYMENT:
            pod = r["inputs"]["spec"]["template"]["spec"]
        elif r["type"] == INFERENCE_SERVICE:
            pod = r["inputs"]["spec"]["predictor"]
        else:
            continue
        meta = r["inputs"]["metadata"]
        if not any((v.get("persistentVolumeClaim") or {}).get("claimName") == MODEL_STORE_CLAIM for v in pod.get("volumes") or []):
            continue
        pool = (pod.get("nodeSelector") or {}).get(POOL_LABEL)
        if not pool:
            continue
        gib = max(quantity(c["resources"]["requests"]["memory"]) for c in pod["containers"])
        name = f"{meta.get('namespace')}/{meta['name']}"
        if pool not in largest or (gib, largest[pool][0]) > (largest[pool][1], name):
            largest[pool] = (name, gib)
    return largest


def report(records: list[dict]) -> dict[str, Any]:
    pairs = [(r["type"], {**r["outputs"], **r["inputs"]}) for r in records]
    settings = budget_settings(pairs)
    stand_in = next(((p.get("tags") or {}).get(PRICE_TABLE_TAG) for t, p in pairs if t == BUDGET), None)
    instances = price_table(settings[1], stand_in).instances if settings else {}
    classes = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in records if r["type"] == NODE_CLASS}
    pools = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in records if r["type"] == NODE_POOL}
    mode = next((r["inputs"].get("throughputMode") for r in records if r["type"] == FILE_SYSTEM), None)
    mibps: Optional[int] = EFS_CLIENT_MIBPS.get(mode or "")
    serving = _serving(records)
    s3_stores = _s3_stores(records)

    out: dict[str, Any] = {}
    for name, spec in sorted(pools.items()):
        if "replicas" in spec:
            continue
        kind = name if name in timing.NODE_LAUNCH else "cpu"
        parallel = _parallel_pull(classes.get(spec["template"]["spec"]["nodeClassRef"]["name"], {}), _instance_types(spec), instances)
        pull = round(timing.IMAGE_PULL[kind] * (1 - PARALLEL_PULL_GAIN)) if parallel else timing.IMAGE_PULL[kind]
        entry: dict[str, Any] = {"nodeLaunchSeconds": timing.NODE_LAUNCH[kind], "imagePullSeconds": pull, "parallelPull": parallel}
        workload = serving.get(name)
        weights = 0
        if workload and workload[0].split("/")[0] in s3_stores:
            weights = timing.MOUNTPOINT_POD + round(workload[1] * 1024 / S3_CLIENT_MIBPS)
            entry.update(workload=workload[0], weightsGib=round(workload[1], 2), weightsSeconds=weights,
                         weightsFrom=f"S3 through Mountpoint, {S3_CLIENT_MIBPS} MiB/s per client after its pod's {timing.MOUNTPOINT_POD}s start")
        elif workload and mibps:
            weights = round(workload[1] * 1024 / mibps)
            entry.update(workload=workload[0], weightsGib=round(workload[1], 2), weightsSeconds=weights, weightsFrom=f"EFS {mode}, {mibps} MiB/s per client")
        entry["readySeconds"] = entry["nodeLaunchSeconds"] + pull + weights
        warm = pools.get(f"{name}-static")
        if warm:
            entry.update(warmNodes=int(warm["replicas"]), warmReadySeconds=pull + weights)
        out[name] = entry
    return {
        "pools": out,
        "assumptions": [
            "a serving pod that needs a new node: node launch, image pull and the read of its weights, in that order",
            f"parallel pull (nodeadm FastImagePull) counted {PARALLEL_PULL_GAIN:.0%} faster than the sequential pull, on pools whose every instance type has at least {FAST_PULL_FLOOR[0]} vCPUs and {FAST_PULL_FLOOR[1]:g} GiB",
            "weights: the largest memory request of a serving pod on the pool that mounts a team model store, read at the store's per-client throughput; pools with no such pod count none",
            "not counted: the server's own start after the read, scheduling and the startup probe's period",
        ],
    }


def summary_line(cold: dict[str, Any]) -> str:
    parts = []
    for name, p in cold["pools"].items():
        detail = f"launch {p['nodeLaunchSeconds']}s + pull {p['imagePullSeconds']}s{' (parallel)' if p['parallelPull'] else ''}"
        if "weightsSeconds" in p:
            detail += f" + weights {p['weightsSeconds']}s ({p['workload']})"
        warm = f"; on a warm node {p['warmReadySeconds'] / 60:.1f} min" if "warmReadySeconds" in p else ""
        parts.append(f"{name} {p['readySeconds'] / 60:.1f} min ({detail}{warm})")
    return "cold start (serving pod Ready on a fresh node): " + "; ".join(parts)

