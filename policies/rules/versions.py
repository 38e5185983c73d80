"""Versions inside their upstream support window: past its end is a mandatory violation, in extended or
deprecated support an advisory one. The table is dated; review it when a pin moves or a window closes."""
from __future__ import annotations

import datetime
from typing import Optional

from .aws import EKS_CLUSTER, EKS_COMPONENT
from .base import ADVISORY, HELM_RELEASE, MANDATORY, resource_rule

REVIEWED = "2026-11-25"
SUPPORTED, EXTENDED, DEPRECATED, ENDED = "supported", "extended support", "deprecated", "end of support"

# Kubernetes on EKS: (end of standard support, end of extended support), from the EKS release calendar.
EKS_KUBERNETES = {
    "1.31": ("2025-11-26", "2026-11-26"),
    "1.32": ("2026-03-23", "2027-03-23"),
    "1.33": ("2026-07-29", "2027-07-29"),
    "1.34": ("2026-12-02", "2027-12-02"),
    "1.35": ("2027-03-27", "2028-03-27"),
}
# Chart release lines and their status as each project's support policy stated it on REVIEWED:
# NVIDIA GPU Operator: the newest major is supported, the one before deprecated, older ones ended.
# Istio: a minor is supported until six weeks after the minor two releases later (1.31 is due, 1.32 not).
CHART_LINES = {
    "gpu-operator": {"v26.7": SUPPORTED, "v26.3": DEPRECATED},
    "istiod": {"1.30": SUPPORTED, "1.29": DEPRECATED},
}
# Lines older than every listed one have ended; newer ones are not reviewed yet (reported as such).


def kubernetes_status(version: str, today: datetime.date) -> tuple[str, str]:
    """(status, detail) of an EKS Kubernetes minor version on a date."""
    if version not in EKS_KUBERNETES:
        return ENDED, f"Kubernetes {version} is not in the EKS support table (reviewed {REVIEWED})"
    standard, extended = (datetime.date.fromisoformat(d) for d in EKS_KUBERNETES[version])
    if today <= standard:
        return SUPPORTED, f"Kubernetes {version} is in EKS standard support until {standard}"
    if today <= extended:
        return EXTENDED, f"Kubernetes {version} left EKS standard support on {standard}; extended support (billed extra) ends {extended}"
    return ENDED, f"Kubernetes {version} reached the end of EKS extended support on {extended}"


def _line(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.lstrip("v").split(".")[:2])


def chart_status(chart: str, version: str) -> Optional[tuple[str, str]]:
    """(status, detail) of a chart version, or None when the chart has no tracked support window."""
    lines = CHART_LINES.get(chart)
    if lines is None:
        return None
    line = next((known for known in lines if _line(known) == _line(version)), None)
    if line is not None:
        return lines[line], f"{chart} {version} ({line}.x) is {lines[line]} (support table reviewed {REVIEWED})"
    if _line(version) < min(_line(known) for known in lines):
        return ENDED, f"{chart} {version} is older than every supported line ({', '.join(sorted(lines))})"
    return SUPPORTED, f"{chart} {version} is newer than the support table (reviewed {REVIEWED})"


def _status(props: dict, args) -> Optional[tuple[str, str]]:
    if args.resource_type in (EKS_COMPONENT, EKS_CLUSTER):
        return kubernetes_status(str(props.get("version")), datetime.date.today())
    return chart_status(str(props.get("chart", "")).rsplit("/", 1)[-1], str(props.get("version", "")))


TYPES = [EKS_COMPONENT, EKS_CLUSTER, HELM_RELEASE]


@resource_rule(
    "version-supported",
    "Kubernetes and the charts with a published support window run a version that upstream still supports (a dated table in policies/rules/versions.py).",
    "Upgrade to a supported version: cluster.kubernetesVersion, or the chart's version key, with infra/config/pins.py and schemas/refresh.py.",
    MANDATORY,
    TYPES,
)
def version_supported(props, args):
    status = _status(props, args)
    if status and status[0] == ENDED:
        yield status[1]


@resource_rule(
    "version-in-standard-support",
    "Kubernetes and tracked charts are in standard support, not in paid extended support or deprecated, so there is time to plan the upgrade.",
    "Plan the upgrade now: the version is in extended or deprecated support and will reach its end.",
    ADVISORY,
    TYPES,
)
def version_in_standard_support(props, args):
    status = _status(props, args)
    if status and status[0] in (EXTENDED, DEPRECATED):
        yield status[1]
