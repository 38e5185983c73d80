"""All rules of the ml-platform policy pack, importable without starting the pack server."""
from __future__ import annotations

from . import autoscaling, aws, awaits, cost, efa, gitops, helm_values, kubernetes, placement, production, stack, versions, workloads
from .base import Rule

RULES: list[Rule] = [v for m in (aws, kubernetes, workloads, autoscaling, production, versions, cost, stack, placement, awaits, efa, gitops, helm_values) for v in vars(m).values() if isinstance(v, Rule)]
