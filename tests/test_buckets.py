"""Every platform bucket carries the same settings, from one builder (infra/lib/buckets.py)."""
from __future__ import annotations

LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"


def test_a_lifecycle_rule_on_old_versions_waits_for_versioning(stack):
    # S3 refuses a noncurrent-version rule on a bucket whose versioning is not on yet: a first `up` would fail.
    lifecycles = stack.of_type(LIFECYCLE)
    assert lifecycles
    for lifecycle in lifecycles:
        [versioning] = [v for v in stack.of_type(VERSIONING) if v["inputs"]["bucket"] == lifecycle["inputs"]["bucket"]]
        assert stack.depends_on(lifecycle, versioning), lifecycle["name"]
        assert versioning["inputs"]["versioningConfiguration"]["status"] == "Enabled"


def test_every_bucket_is_owner_enforced_private_encrypted_and_tls_only(stack):
    import json

    buckets = {r["outputs"]["id"] for r in stack.of_type("aws:s3/bucket:Bucket")}
    for kind in ("bucketOwnershipControls:BucketOwnershipControls", "bucketPublicAccessBlock:BucketPublicAccessBlock",
                 "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "bucketPolicy:BucketPolicy"):
        assert {r["inputs"]["bucket"] for r in stack.of_type(f"aws:s3/{kind}")} >= buckets, kind
    for policy in stack.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        [statement] = [s for s in json.loads(policy["inputs"]["policy"])["Statement"] if s["Sid"] == "DenyInsecureTransport"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
