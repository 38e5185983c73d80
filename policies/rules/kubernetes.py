"""Kubernetes and ML-aware rules over individual resources."""
from __future__ import annotations

from .base import HELM_RELEASE, MANDATORY, dig, resource_rule
from .scheduling import offered_resources

NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"


@resource_rule(
    "helm-release-pinned",
    "Every Helm release pins an exact chart version and names its repository, so every environment installs exactly what was reviewed.",
    "Set version to an exact chart version from config and repositoryOpts.repo (or an oci:// chart).",
    MANDATORY,
    [HELM_RELEASE],
)
def helm_release_pinned(props, args):
    version = str(props.get("version") or "")
    if not version or version in ("latest", "*") or any(c in version for c in "^~*x><"):
        yield f"chart {props.get('chart')!r} has no exact version (got {version!r})"
    if not str(props.get("chart", "")).startswith("oci://") and not dig(props, "repositoryOpts", "repo"):
        yield f"chart {props.get('chart')!r} names no repository"


@resource_rule(
    "accelerator-pool-guarded",
    "A NodePool that launches GPU or Neuron instances has a limit on that accelerator (no runaway spend) and a NoSchedule taint (only accelerator pods land there).",
    "Add spec.limits['nvidia.com/gpu' or 'aws.amazon.com/neuron'] and the matching taint to the pool template.",
    MANDATORY,
    [NODEPOOL],
)
def accelerator_pool_guarded(props, args):
    spec = props.get("spec") or {}
    for resource in sorted(offered_resources(spec)):
        # A static NodePool's replicas bound it; the CRD allows no accelerator limit beside them.
        if resource not in (spec.get("limits") or {}) and spec.get("replicas") is None:
            yield f"pool launches {resource} instances but has no {resource} limit"
        taints = dig(spec, "template", "spec", "taints", default=[]) or []
        if not any(t.get("key") == resource and t.get("effect") == "NoSchedule" for t in taints):
            yield f"pool launches {resource} instances but has no {resource}:NoSchedule taint"


@resource_rule(
    "karpenter-ami-pinned",
    "EC2NodeClasses select AMIs by a pinned alias version, never @latest, which would roll every node on each AMI release.",
    "Set amiAlias to a released version, e.g. al2023@v20251108, and bump it deliberately.",
    MANDATORY,
    ["kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"],
)
def karpenter_ami_pinned(props, args):
    for term in dig(props, "spec", "amiSelectorTerms", default=[]) or []:
        alias = term.get("alias")
        if alias is not None and (alias.endswith("@latest") or "@" not in alias):
            yield f"AMI alias {alias!r} is not pinned to a version"




GATEWAY_NAMESPACE = "istio-ingress"


@resource_rule(
    "loadbalancer-only-for-gateway",
    "Only the ingress gateway gets a Service of type LoadBalancer; models are exposed through the shared Istio Gateway.",
    "Use a ClusterIP Service and attach a VirtualService to the shared gateway.",
    MANDATORY,
    ["kubernetes:core/v1:Service"],
)
def loadbalancer_only_for_gateway(props, args):
    if dig(props, "spec", "type") != "LoadBalancer":
        return
    namespace = dig(props, "metadata", "namespace")
    if namespace != GATEWAY_NAMESPACE or dig(props, "spec", "selector", "istio") != "ingressgateway":
        yield f"Service of type LoadBalancer in {namespace!r} that does not select the ingress gateway"
