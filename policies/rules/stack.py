"""Rules over the whole stack: how resources relate to each other."""
from __future__ import annotations

from .base import HELM_RELEASE, MANDATORY, stack_rule


@stack_rule(
    "kubernetes-single-provider",
    "Every Kubernetes resource uses the one explicit provider built from the cluster's stable kubeconfig, never an ambient one.",
    "Pass opts=ResourceOptions(provider=cluster.provider) (or parent under a resource that has it).",
    MANDATORY,
)
def kubernetes_single_provider(resources, settings):
    k8s = [r for r in resources if r.resource_type.startswith("kubernetes:")]
    providers = {r.provider.urn if r.provider else None for r in k8s}
    for r in k8s:
        if r.provider is None or r.provider.resource_type != "pulumi:providers:kubernetes":
            yield "Kubernetes resource uses the default provider (ambient kubeconfig)", r.urn
    if len(providers - {None}) > 1:
        yield f"{len(providers - {None})} Kubernetes providers are in use; expected one", None


# API groups served by custom resource definitions, and the chart that installs them.
CRD_CHARTS = {
    "karpenter.sh": "karpenter-crd",
    "karpenter.k8s.aws": "karpenter-crd",
    "monitoring.coreos.com": "kube-prometheus-stack",
    "networking.istio.io": "base",
    "security.istio.io": "base",
    "telemetry.istio.io": "base",
    "autoscaling.k8s.io": "vertical-pod-autoscaler",
    "kueue.x-k8s.io": "kueue",
    "jobset.x-k8s.io": "jobset",
    "trainer.kubeflow.org": "kubeflow-trainer",
    "scheduling.volcano.sh": "volcano",
    "nvidia.com": "gpu-operator",
    "leaderworkerset.x-k8s.io": "lws",
    "serving.kserve.io": "kserve-crd",
    "cert-manager.io": "cert-manager",
    "acme.cert-manager.io": "cert-manager",
    "argoproj.io": "argo-cd",
}
# API groups whose CRDs an EKS capability installs when it is created (Argo CD's, type ARGOCD).
CRD_CAPABILITIES = {"argoproj.io": "ARGOCD"}
CAPABILITY = "aws:eks/capability:Capability"
# Not served by a CRD: built-in groups, and the types of pulumi-kubernetes' own components (helm.sh, yaml).
BUILTIN_GROUPS = {
    "core", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "helm.sh", "yaml", "resource.k8s.io", "apiregistration.k8s.io",
}


def _api_group(resource_type: str) -> str:
    return resource_type.split(":")[1].split("/")[0]


def _chart_name(resource) -> str:
    return str(resource.props.get("chart", "")).rsplit("/", 1)[-1]


def _ancestors_by_dependency(resource, children: dict | None = None) -> list:
    """What the resource waits for: its dependencies, theirs, and the children of a component among them (the
    engine waits for a component's children, such as the objects a ConfigFile applies)."""
    seen, stack, found = set(), list(resource.dependencies), []
    while stack:
        r = stack.pop()
        if r.urn in seen:
            continue
        seen.add(r.urn)
        found.append(r)
        stack.extend(r.dependencies)
        stack.extend((children or {}).get(r.urn, ()))
    return found


CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def _crd_key(crd) -> tuple[str, str]:
    spec = crd.props.get("spec") or {}
    return str(spec.get("group")), str((spec.get("names") or {}).get("kind"))


@stack_rule(
    "custom-resource-after-its-crd",
    "Every custom resource depends (directly or through other resources) on what installs its CRD (the Helm release, or the CustomResourceDefinition itself), so create and destroy run in the right order.",
    "Add the CRD-installing release or CustomResourceDefinition (or a resource depending on it) to the custom resource's depends_on.",
    MANDATORY,
)
def custom_resource_after_its_crd(resources, settings):
    # By group and kind: two projects may share a group (Argo CD's and Argo Workflows' argoproj.io).
    declared = {_crd_key(r) for r in resources if r.resource_type == CRD}
    children: dict = {}
    for r in resources:
        if getattr(r, "parent", None) is not None:
            children.setdefault(r.parent.urn, []).append(r)
    # A CRD a chart renders is applied by its release: depending on the release is depending on the CRD.
    by_release: dict = {}
    for r in resources:
        if r.resource_type == CRD and getattr(r, "parent", None) is not None and r.parent.resource_type == HELM_RELEASE:
            by_release.setdefault(r.parent.urn, set()).add(_crd_key(r))
    for r in resources:
        if not r.resource_type.startswith("kubernetes:") or r.resource_type == CRD:
            continue
        group = _api_group(r.resource_type)
        if group in BUILTIN_GROUPS:
            continue
        ancestors = _ancestors_by_dependency(r, children)
        key = (group, r.resource_type.rsplit(":", 1)[1])
        if key in declared:
            if not any((d.resource_type == CRD and _crd_key(d) == key) or key in by_release.get(d.urn, ()) for d in ancestors):
                yield f"does not depend on the CustomResourceDefinitions of {group}", r.urn
            continue
        if any(d.resource_type == CAPABILITY and d.props.get("type") == CRD_CAPABILITIES.get(group) for d in ancestors):
            continue
        chart = CRD_CHARTS.get(group)
        if chart is None:
            yield f"nothing in the stack installs the CRDs of API group {group!r}", r.urn
            continue
        # A chart's own custom resources: Helm applies its crds/ before its templates.
        owners = [*ancestors, *([r.parent] if getattr(r, "parent", None) else [])]
        if not any(d.resource_type == HELM_RELEASE and _chart_name(d) == chart for d in owners):
            capability = f" or the EKS {CRD_CAPABILITIES[group]} capability" if group in CRD_CAPABILITIES else ""
            yield f"does not depend on the {chart!r} release{capability} that installs the {group} CRDs", r.urn
