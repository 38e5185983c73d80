"""Customer-managed KMS keys: rotating, with a readable alias."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws


def encryption_key(name: str, alias: str, description: str, tags: dict[str, str], parent: pulumi.Resource, protect: bool = False) -> aws.kms.Key:
    key = aws.kms.Key(
        name,
        aws.kms.KeyArgs(description=description, enable_key_rotation=True, deletion_window_in_days=30, tags=tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    aws.kms.Alias(name, aws.kms.AliasArgs(name=f"alias/{alias}", target_key_id=key.key_id), opts=pulumi.ResourceOptions(parent=parent))
    return key
