"""EFA (Elastic Fabric Adapter) node pools: only instance types that carry EFA.

EFA_INSTANCE_TYPES are the NVIDIA and Neuron instance types in the pinned EFA device plugin chart's
supportedInstanceLabels (aws/eks-charts stable/aws-efa-k8s-device-plugin v0.5.30, values.yaml, which follows the
EC2 User Guide's list of EFA instance types; vendored under schemas/charts/, a test holds the two equal). The
plugin's DaemonSet runs only on these types, so a pool of any other type would never advertise vpc.amazonaws.com/efa.
"""
from __future__ import annotations

from .base import MANDATORY, resource_rule

EFA_LABEL = "ml-platform.io/efa"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
EFA_INSTANCE_TYPES = frozenset({
    "g4dn.8xlarge", "g4dn.12xlarge", "g4dn.16xlarge", "g4dn.metal",
    "g5.8xlarge", "g5.12xlarge", "g5.16xlarge", "g5.24xlarge", "g5.48xlarge",
    "g6.8xlarge", "g6.12xlarge", "g6.16xlarge", "g6.24xlarge", "g6.48xlarge",
    "g6e.8xlarge", "g6e.12xlarge", "g6e.16xlarge", "g6e.24xlarge", "g6e.48xlarge",
    "gr6.8xlarge", "inf1.24xlarge", "p3dn.24xlarge", "p4d.24xlarge", "p4de.24xlarge",
    "p5.4xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge",
    "trn1.32xlarge", "trn1n.32xlarge", "trn2.3xlarge", "trn2.48xlarge",
})


def without_efa(instance_types) -> list[str]:
    return [t for t in instance_types if t not in EFA_INSTANCE_TYPES]


@resource_rule(
    "efa-instance-types",
    "A NodePool labelled for EFA allows only instance types that carry EFA (the EFA device plugin's supported types); "
    "on any other, pods requesting vpc.amazonaws.com/efa stay Pending.",
    "Remove the named types from the pool's instanceTypes, or turn efa off for the pool.",
    MANDATORY,
    ["kubernetes:karpenter.sh/v1:NodePool"],
)
def efa_instance_types(props, args):
    template = (props.get("spec") or {}).get("template") or {}
    if ((template.get("metadata") or {}).get("labels") or {}).get(EFA_LABEL) != "true":
        return
    named = next((r for r in (template.get("spec") or {}).get("requirements") or [] if r.get("key") == "node.kubernetes.io/instance-type"), None)
    if not named or named.get("operator") != "In":
        yield "an EFA pool must name its instance types (node.kubernetes.io/instance-type In [...]) so each can be checked for EFA"
        return
    for t in without_efa(named.get("values") or []):
        yield f"instance type {t} has no EFA, but the pool is labelled {EFA_LABEL}=true"
