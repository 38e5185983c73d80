"""A workload's path on the shared Gateway: one HTTPRoute rule that strips the path prefix and splits traffic by
weight between the workload's versions (classic Services, KServe predictors or LLM InferencePools)."""
from __future__ import annotations

from typing import Any


def weighted_route(name: str, path: str, parent_ref: dict[str, str], hosts: list[str], backends: list[dict[str, Any]], timeout: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [parent_ref],
        "rules": [
            {
                "name": name,
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                "backendRefs": backends,
                "timeouts": {"request": timeout},
            }
        ],
    }
    if hosts != ["*"]:
        spec["hostnames"] = hosts
    return spec
