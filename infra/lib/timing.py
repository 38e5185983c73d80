"""How long things take on a real account, in seconds: what Pulumi's awaits are sized to.

Typical figures with a margin, not guarantees; docs/reference/await-timeouts.md is generated from them.
"""
from __future__ import annotations

# Karpenter: EC2 launch, boot and kubelet join. GPU and Neuron AMIs are larger and load drivers first.
NODE_LAUNCH = {"cpu": 150, "nvidia": 300, "neuron": 300}
# Pulling a framework image: a few hundred MB for CPU, 5-10 GB for CUDA and Neuron images.
IMAGE_PULL = {"cpu": 180, "nvidia": 480, "neuron": 480}
# Downloading a public model of a few hundred MB through the NAT gateway, and publishing it to EFS.
MODEL_DOWNLOAD = 600
# Copying an open LLM's weights (a few GB of safetensors) from the Hugging Face Hub through the NAT gateway to EFS.
LLM_DOWNLOAD = 1800
# An S3 model store's volume on a fresh node: the CSI driver starts a Mountpoint Pod, whose image is the driver's own,
# pulled by the driver's DaemonSet when the node joined (beside the workload's pull); then mount-s3 starts. Seconds,
# not minutes, until a deploy measures it (mountpoint-s3-csi-driver v2.7.0: charts/.../controller.yaml MOUNTPOINT_IMAGE).
MOUNTPOINT_POD = 15
# Tracing a transformer for NeuronCores with a fixed input shape.
NEURON_COMPILE = 1800
# Headroom for retries (a spot capacity miss, a slow registry).
MARGIN = 300


def pod_ready(pool: str, startup_seconds: int) -> int:
    """A pod that needs a new node: launch, pull, then its startup probe's allowance."""
    return NODE_LAUNCH[pool] + IMAGE_PULL[pool] + startup_seconds + MARGIN


def job_done(pool: str, work_seconds: int) -> int:
    """A Job that needs a new node and then works for `work_seconds`."""
    return NODE_LAUNCH[pool] + IMAGE_PULL[pool] + work_seconds + MARGIN


# A Helm release whose pods wait for Karpenter to launch a cpu node.
HELM_ON_NEW_NODES = pod_ready("cpu", 300)
