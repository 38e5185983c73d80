"""Rules over the whole stack: how resources relate to each other."""
from __future__ import annotations

from .base import MANDATORY, stack_rule


@stack_rule(
    "kubernetes-single-provider",
    "Every Kubernetes resource uses the one explicit provider built from the cluster's stable kubeconfig.",
    "Pass opts=ResourceOptions(provider=cluster.provider) (or parent under a resource that has it).",
    MANDATORY,
)
def kubernetes_single_provider(resources):
    k8s = [r for r in resources if r.resource_type.startswith("kubernetes:")]
    providers = {r.provider.urn if r.provider else None for r in k8s}
    for r in k8s:
        if r.provider is None or r.provider.resource_type != "pulumi:providers:kubernetes":
            yield "Kubernetes resource uses the default provider (ambient kubeconfig)", r.urn
    if len(providers - {None}) > 1:
        yield f"{len(providers - {None})} Kubernetes providers are in use; expected one", None
