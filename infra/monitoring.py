"""How a component tells Observability what to scrape."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class ScrapeTarget:
    """A workload a component installs and Prometheus scrapes, with the resource that creates it."""

    name: str
    kind: str  # ServiceMonitor or PodMonitor
    namespace: str
    selector: dict[str, Any]
    endpoint: dict[str, Any]
    created_by: pulumi.Resource
    any_namespace: bool = False
