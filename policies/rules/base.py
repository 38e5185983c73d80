"""A rule: the policy's metadata plus the validate function, callable without the pack server."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

ADVISORY, MANDATORY = EnforcementLevel.ADVISORY, EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    remediation: str
    level: EnforcementLevel
    validate_resource: Optional[Callable[[ResourceValidationArgs, ReportViolation], None]] = None
    validate_stack: Optional[Callable[[StackValidationArgs, ReportViolation], None]] = None

    def policy(self):
        common = dict(
            name=self.name,
            description=self.description,
            enforcement_level=self.level,
            remediation_steps=self.remediation,
        )
        if self.validate_resource:
            return ResourceValidationPolicy(validate=self.validate_resource, **common)
        return StackValidationPolicy(validate=self.validate_stack, **common)


def resource_rule(name: str, description: str, remediation: str, level: EnforcementLevel, types: Iterable[str]):
    """Decorates `check(props, args) -> Iterable[str]`, run on resources of the given types."""
    type_set = frozenset(types)

    def wrap(check: Callable[[dict, ResourceValidationArgs], Iterable[str]]) -> Rule:
        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            if args.resource_type in type_set:
                for message in check(args.props, args):
                    report(message, None)

        return Rule(name, description, remediation, level, validate_resource=validate)

    return wrap


def stack_rule(name: str, description: str, remediation: str, level: EnforcementLevel):
    """Decorates `check(resources) -> Iterable[(message, urn)]` over the whole stack."""

    def wrap(check: Callable[[list], Iterable[tuple[str, Optional[str]]]]) -> Rule:
        def validate(args: StackValidationArgs, report: ReportViolation) -> None:
            for message, urn in check(args.resources):
                report(message, urn)

        return Rule(name, description, remediation, level, validate_stack=validate)

    return wrap


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj
