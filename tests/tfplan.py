"""Renders a synthesized stack's AWS resources as a Terraform plan (JSON), for checkov's Terraform checks.

The AWS provider of Pulumi is bridged from Terraform's, so types and arguments map mechanically:
`aws:ec2/vpc:Vpc` is `aws_vpc`, `aws:eks/nodeGroup:NodeGroup` is `aws_eks_node_group`, camelCase
arguments are Terraform's snake_case ones. References between resources (a subnet's vpc_id naming the
VPC's id) are rendered as plan expressions so checkov's graph checks can follow them.
"""
from __future__ import annotations

import re
from typing import Any

# Terraform names that do not follow the mechanical rule.
TYPE_OVERRIDES = {"aws:iam/openIdConnectProvider:OpenIdConnectProvider": "aws_iam_openid_connect_provider"}
# Repeated blocks Pulumi names in the plural where Terraform's block is singular (`rules` is `rule`).
BLOCK_OVERRIDES = {
    "aws_s3_bucket_lifecycle_configuration": {"rules": "rule"},
    "aws_s3_bucket_server_side_encryption_configuration": {"rules": "rule"},
}
# Modules whose resources Terraform names without the module (aws_vpc, not aws_ec2_vpc).
UNPREFIXED_MODULES = {"ec2"}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def terraform_type(pulumi_type: str) -> str:
    if pulumi_type in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[pulumi_type]
    module, resource = pulumi_type.split(":")[1].split("/")[0], pulumi_type.split(":")[2]
    return f"aws_{snake(resource)}" if module in UNPREFIXED_MODULES else f"aws_{module}_{snake(resource)}"


def _values(value: Any, top: bool = True) -> Any:
    if isinstance(value, dict):
        # Tags are maps of user keys; everything else is an argument or a block.
        return {k if not top and k.islower() else snake(k): (v if k in ("tags", "tagsAll") else _values(v, False)) for k, v in value.items()}
    if isinstance(value, list):
        return [_values(v, False) for v in value]
    return value


def plan(records: list[dict]) -> dict[str, Any]:
    aws = [r for r in records if r["type"].startswith("aws:") and r["custom"]]
    addresses, seen = {}, set()
    for r in aws:
        tf_type, name = terraform_type(r["type"]), re.sub(r"[^A-Za-z0-9_-]", "_", r["name"])
        while f"{tf_type}.{name}" in seen:
            name += "_"
        seen.add(f"{tf_type}.{name}")
        addresses[r["urn"]] = (tf_type, name)
    # Which resource an id or ARN belongs to, so references can be rendered.
    owners = {r["outputs"][k]: f"{'.'.join(addresses[r['urn']])}.{k}" for r in aws for k in ("id", "arn") if isinstance(r["outputs"].get(k), str)}
    resources, changes, configuration = [], [], []
    for r in aws:
        tf_type, name = addresses[r["urn"]]
        values = _values({**r["outputs"], **r["inputs"]})
        values = {BLOCK_OVERRIDES.get(tf_type, {}).get(k, k): v for k, v in values.items()}
        resources.append({"address": f"{tf_type}.{name}", "mode": "managed", "type": tf_type, "name": name,
                          "provider_name": "registry.terraform.io/hashicorp/aws", "values": values})
        changes.append({"address": f"{tf_type}.{name}", "mode": "managed", "type": tf_type, "name": name,
                        "change": {"actions": ["create"], "before": None, "after": values}})
        expressions = {}
        for key, value in values.items():
            refs = [owners[v] for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v in owners]
            if refs and not refs[0].startswith(f"{tf_type}.{name}."):
                expressions[key] = {"references": [*refs, *(ref.rsplit(".", 1)[0] for ref in refs)]}
        configuration.append({"address": f"{tf_type}.{name}", "mode": "managed", "type": tf_type, "name": name, "expressions": expressions})
    return {
        "format_version": "1.2",
        "terraform_version": "1.9.0",
        "planned_values": {"root_module": {"resources": resources}},
        "resource_changes": changes,
        "configuration": {"root_module": {"resources": configuration}},
    }
