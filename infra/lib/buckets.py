"""The settings every platform bucket carries: owner-enforced, private, SSE-KMS with S3 Bucket Keys, versioned, a
lifecycle rule, TLS only."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.lib.iam import policy_document


def tls_only_policy(bucket_arn: str) -> str:
    """Only TLS requests reach the bucket (S3 user guide, "Security best practices": aws:SecureTransport)."""
    return policy_document([{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }])


def private_encrypted(
    name: str, bucket: aws.s3.Bucket, key_arn: pulumi.Input[str], lifecycle: aws.s3.BucketLifecycleConfigurationRuleArgs, parent: pulumi.Resource,
) -> list[pulumi.Resource]:
    """The bucket's settings, each its own resource named `name`; what writes to the bucket should wait for them."""
    child = pulumi.ResourceOptions(parent=parent)
    versioning = aws.s3.BucketVersioning(
        name, bucket=bucket.id, versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"), opts=child,
    )
    return [
        aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child),
        aws.s3.BucketPublicAccessBlock(
            name, bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child,
        ),
        aws.s3.BucketServerSideEncryptionConfiguration(
            name, bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key_arn),
                # S3 Bucket Keys: one data key per bucket, not a KMS call per object.
                bucket_key_enabled=True,
            )],
            opts=child,
        ),
        versioning,
        # S3 refuses lifecycle rules on noncurrent versions until versioning is on.
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=[lifecycle], opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning])),
        aws.s3.BucketPolicy(name, bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy), opts=child),
    ]
