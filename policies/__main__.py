"""Builds the CrossGuard pack; `pulumi preview --policy-pack policies` starts it."""
from pulumi_policy import EnforcementLevel, PolicyPack

from rules import RULES

PolicyPack(
    name="ml-platform",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=[rule.policy() for rule in RULES],
)
