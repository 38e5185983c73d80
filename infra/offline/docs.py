"""Generated parts of the README, so the documentation is the pack: `python -m infra.offline.docs` prints them."""
from __future__ import annotations

from infra.offline.policy_check import enforcement_levels
from policies.rules import RULES

ENVIRONMENTS = ("dev", "staging", "prod")


def policy_table() -> str:
    levels = {e: enforcement_levels(e) for e in ENVIRONMENTS}
    rows = ["| rule | what it checks, and why | dev | staging | prod |", "| --- | --- | --- | --- | --- |"]
    for rule in RULES:
        rows.append(f"| `{rule.name}` | {rule.description} | " + " | ".join(levels[e][rule.name].value for e in ENVIRONMENTS) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(policy_table(), end="")
