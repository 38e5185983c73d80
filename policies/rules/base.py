"""A rule: the policy's metadata plus the validate function, callable without the pack server."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

ADVISORY, MANDATORY = EnforcementLevel.ADVISORY, EnforcementLevel.MANDATORY
# The resource type of a Helm release, as the rules and the offline tooling name it.
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    remediation: str
    level: EnforcementLevel
    validate_resource: Optional[Callable[[ResourceValidationArgs, ReportViolation], None]] = None
    validate_stack: Optional[Callable[[StackValidationArgs, ReportViolation], None]] = None
    # JSON Schema properties (each with a default) of the settings the per-environment policy config may give.
    config_schema: Optional[dict[str, dict[str, Any]]] = None

    def settings(self, config: Any) -> dict[str, Any]:
        """The rule's settings: the policy config's values over the schema's defaults."""
        given = dict(config or {})
        return {key: given.get(key, prop.get("default")) for key, prop in (self.config_schema or {}).items()}

    def policy(self):
        common = dict(
            name=self.name,
            description=self.description,
            enforcement_level=self.level,
            remediation_steps=self.remediation,
            config_schema=PolicyConfigSchema(properties=self.config_schema) if self.config_schema else None,
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


def stack_rule(name: str, description: str, remediation: str, level: EnforcementLevel, config_schema: Optional[dict] = None):
    """Decorates `check(resources, settings) -> Iterable[(message, urn)]` over the whole stack."""

    def wrap(check: Callable[[list, dict], Iterable[tuple[str, Optional[str]]]]) -> Rule:
        def validate(args: StackValidationArgs, report: ReportViolation) -> None:
            for message, urn in check(args.resources, rule.settings(args.get_config())):
                report(message, urn)

        rule = Rule(name, description, remediation, level, validate_stack=validate, config_schema=config_schema)
        return rule

    return wrap


def quantity(value: Any) -> float:
    """A Kubernetes quantity as NodePool limits, queues and quotas write it, memory in GiB: 8, 500m, 512Mi, 8Gi, 1Ti."""
    text = str(value)
    for suffix, factor in (("Gi", 1.0), ("Mi", 1 / 1024), ("Ti", 1024.0), ("m", 1 / 1000)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj
