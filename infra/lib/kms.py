"""Customer-managed KMS keys: rotating, with an explicit key policy and a readable alias."""
from __future__ import annotations

from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.lib.account import current
from infra.lib.iam import policy_document

# What a service needs to encrypt and decrypt with the key on a caller's behalf.
USE_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]


def via_service(service: str, region: str) -> dict[str, Any]:
    """Principals of this account may use the key, but only through the named AWS service (as AWS-managed keys allow)."""
    account = current()
    return {
        "Sid": f"Allow{service.split('.')[0].title().replace('-', '')}Use",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": [*USE_ACTIONS, "kms:CreateGrant"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": account.account_id, "kms:ViaService": f"{service}.{region}.amazonaws.com"}},
    }


def cloudwatch_logs_use(region: str) -> dict[str, Any]:
    """CloudWatch Logs may use the key for this account's log groups in the region, and nothing else."""
    account = current()
    return {
        "Sid": "AllowCloudWatchLogsUse",
        "Effect": "Allow",
        "Principal": {"Service": f"logs.{region}.amazonaws.com"},
        "Action": USE_ACTIONS,
        "Resource": "*",
        "Condition": {
            "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{account.partition}:logs:{region}:{account.account_id}:log-group:*"}
        },
    }


def key_policy(service_use: Sequence[dict[str, Any]]) -> str:
    """The account administers the key through IAM; each service that uses it gets its own statement."""
    administration = {
        "Sid": "AccountAdministration",
        "Effect": "Allow",
        "Principal": {"AWS": current().root()},
        "Action": "kms:*",
        "Resource": "*",
    }
    return policy_document([administration, *service_use])


def encryption_key(
    name: str,
    alias: str,
    description: str,
    tags: dict[str, str],
    parent: pulumi.Resource,
    service_use: Sequence[dict[str, Any]],
    protect: bool = False,
) -> aws.kms.Key:
    key = aws.kms.Key(
        name,
        aws.kms.KeyArgs(
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=key_policy(service_use),
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    aws.kms.Alias(name, aws.kms.AliasArgs(name=f"alias/{alias}", target_key_id=key.key_id), opts=pulumi.ResourceOptions(parent=parent))
    return key
