"""A small IAM policy evaluator for tests: explicit deny wins, then any allow, else the implicit deny.

Supports what the platform's resource policies use: Principal "*", {"AWS": ...} or {"Service": ...}, wildcard actions
and resources, and the Bool, StringEquals, StringLike and ArnLike condition operators.
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, caller: str) -> bool:
    if principal == "*":
        return True
    values = [v for kind in ("AWS", "Service") for v in _as_list(principal.get(kind, []))] if isinstance(principal, dict) else []
    return "*" in values or caller in values


def _condition_holds(condition: dict, context: dict[str, Any]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            if key not in context:
                return False
            actual, wanted = context[key], _as_list(expected)
            if operator == "Bool":
                ok = str(actual).lower() in [str(w).lower() for w in wanted]
            elif operator == "StringEquals":
                ok = actual in wanted
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(str(actual), w) for w in wanted)
            else:
                raise NotImplementedError(operator)
            if not ok:
                return False
    return True


def _statement_applies(st: dict, action: str, resource: str, caller: str, context: dict[str, Any]) -> bool:
    return (
        _principal_matches(st.get("Principal", "*"), caller)
        and any(fnmatch.fnmatchcase(action, a) for a in _as_list(st["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(st["Resource"]))
        and _condition_holds(st.get("Condition", {}), context)
    )


def decide(policy: str | dict, action: str, resource: str, context: dict[str, Any], caller: str = "anonymous") -> str:
    """'Allow', 'ExplicitDeny' or 'ImplicitDeny'."""
    doc = json.loads(policy) if isinstance(policy, str) else policy
    applying = [st for st in _as_list(doc["Statement"]) if _statement_applies(st, action, resource, caller, context)]
    if any(st["Effect"] == "Deny" for st in applying):
        return "ExplicitDeny"
    return "Allow" if applying else "ImplicitDeny"
