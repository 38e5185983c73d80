"""Runs the CrossGuard rules over a synthesized graph, as the engine would during `pulumi preview`.

Resource rules see each resource's inputs; stack rules see every resource with its outputs,
parent and dependencies. Enforcement levels come from policies/config/<stack>.json, the same file
passed to `pulumi preview --policy-pack policies --policy-pack-config`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.rules import RULES
from policies.rules.base import Rule

POLICY_CONFIG_DIR = Path(__file__).resolve().parents[2] / "policies" / "config"


class MissingPolicyLevels(Exception):
    """A stack without its policy levels: the rules' defaults would differ from what `pulumi up` is told."""


def levels_file(stack: str) -> Path:
    """The stack's policy levels file, which must exist (the deploy passes it to `--policy-pack-config`)."""
    path = POLICY_CONFIG_DIR / f"{stack}.json"
    if not path.exists():
        raise MissingPolicyLevels(
            f"stack {stack!r} has no policy levels: create {path.relative_to(POLICY_CONFIG_DIR.parents[1])} "
            "(each rule's enforcementLevel: mandatory, advisory or disabled; start from a copy of policies/config/prod.json), "
            "the file pulumi up gets as --policy-pack-config"
        )
    return path


def _entries(stack: str, config_file: Optional[Path] = None) -> dict:
    return json.loads((config_file or levels_file(stack)).read_text())


def enforcement_levels(stack: str, config_file: Optional[Path] = None) -> dict[str, EnforcementLevel]:
    """Each rule's level: its entry in the config file, else the file's `all`, else the rule's default."""
    cfg = _entries(stack, config_file)

    def level(entry) -> Optional[EnforcementLevel]:
        value = entry.get("enforcementLevel") if isinstance(entry, dict) else entry
        return EnforcementLevel(value) if value else None

    default = level(cfg.get("all"))
    return {r.name: level(cfg.get(r.name)) or default or r.level for r in RULES}


def rule_config(stack: str, config_file: Optional[Path] = None) -> dict[str, dict]:
    """Each rule's settings from the config file (what `--policy-pack-config` hands the pack), level aside."""
    cfg = _entries(stack, config_file)
    return {
        name: {k: v for k, v in entry.items() if k != "enforcementLevel"}
        for name, entry in cfg.items()
        if isinstance(entry, dict)
    }


def _options(record: dict, protected: set[str]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=record["urn"] in protected,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=record["parent"],
    )


def check(records: list[dict], stack: str, rules: Optional[list[Rule]] = None, protected: Optional[set[str]] = None) -> dict:
    """`protected`: URNs registered with `protect`, which resources.json does not carry."""
    rules = RULES if rules is None else rules
    protected = protected or set()
    levels, settings = enforcement_levels(stack), rule_config(stack)
    by_urn = {r["urn"]: r for r in records}
    providers = {
        r["urn"]: PolicyProviderResource(r["type"], r["outputs"], r["urn"], r["name"])
        for r in records
        if r["type"].startswith("pulumi:providers:")
    }
    violations: list[dict] = []

    def reporter(rule: Rule, default_urn: Optional[str]):
        def report(message: str, urn: Optional[str] = None) -> None:
            if levels[rule.name] == EnforcementLevel.DISABLED:
                return
            violations.append(
                {
                    "policy": rule.name,
                    "enforcement": levels[rule.name].value,
                    "urn": urn or default_urn or "",
                    "message": message,
                    "remediation": rule.remediation,
                }
            )

        return report

    resource_args = [
        ResourceValidationArgs(rec["type"], rec["inputs"], rec["urn"], rec["name"], _options(rec, protected), providers.get(rec["provider"]))
        for rec in records
    ]
    for rule in (r for r in rules if r.validate_resource):
        for args in resource_args:
            rule.validate_resource(args, reporter(rule, args.urn))

    policy_resources: dict[str, PolicyResource] = {}
    for rec in records:  # sorted by URN; parents and dependencies are linked afterwards
        policy_resources[rec["urn"]] = PolicyResource(
            rec["type"], rec["outputs"], rec["urn"], rec["name"], _options(rec, protected), providers.get(rec["provider"]), None, [], {}
        )
    for urn, pr in policy_resources.items():
        pr.parent = policy_resources.get(by_urn[urn]["parent"])
        pr.dependencies = [policy_resources[d] for d in by_urn[urn]["dependencies"] if d in policy_resources]
    stack_resources = list(policy_resources.values())
    for rule in (r for r in rules if r.validate_stack):
        rule.validate_stack(StackValidationArgs(stack_resources, settings.get(rule.name)), reporter(rule, None))

    violations.sort(key=lambda v: (v["enforcement"] != "mandatory", v["policy"], v["urn"], v["message"]))
    return {
        "violations": violations,
        "summary": {
            "rules": len(rules),
            "resources": len(records),
            "mandatory": sum(v["enforcement"] == "mandatory" for v in violations),
            "advisory": sum(v["enforcement"] == "advisory" for v in violations),
            "levels": {name: lvl.value for name, lvl in sorted(levels.items())},
        },
    }
