"""Pinned Helm releases: one way to install a chart everywhere in the platform."""
from __future__ import annotations

from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s


def resources(cpu: str, memory: str, chart_limits_cpu: bool = True) -> dict[str, Any]:
    """A container's resources as chart values: requests, a memory limit equal to the request, no CPU limit.

    Helm merges these over the chart's default `resources`, so a chart's default CPU limit would survive;
    the null deletes it (Helm drops a key whose user value is null). A chart with no default CPU limit
    (`chart_limits_cpu=False`) would render the null literally, so it gets none.
    """
    limits = {"cpu": None, "memory": memory} if chart_limits_cpu else {"memory": memory}
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def release(
    resource_name: str,
    *,
    name: str,
    chart: str,
    repository: str,
    version: str,
    namespace: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    values: Optional[dict[str, Any]] = None,
    skip_crds: bool = False,
    timeout: Optional[int] = None,
) -> k8s.helm.v3.Release:
    """A release pinned to a chart version, rolled back if it does not become ready."""
    oci = repository.startswith("oci://")
    return k8s.helm.v3.Release(
        resource_name,
        k8s.helm.v3.ReleaseArgs(
            name=name,
            # OCI registries name the chart in its URL; classic repositories by name.
            chart=f"{repository}/{chart}" if oci else chart,
            repository_opts=None if oci else k8s.helm.v3.RepositoryOptsArgs(repo=repository),
            version=version,
            namespace=namespace,
            atomic=True,
            skip_crds=skip_crds or None,
            timeout=timeout,
            values=values,
        ),
        opts=opts,
    )
