"""Image caching: ECR pull-through cache rules for the public registries, and the node permission to fill them."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import UPSTREAMS, PlatformConfig, cache_prefix
from infra.lib.iam import policy_document


@dataclass(frozen=True)
class ImageCacheArgs:
    config: PlatformConfig
    # The Karpenter node role: its kubelets make the first pull of each cached image.
    node_role_name: pulumi.Input[str]


class ImageCache(pulumi.ComponentResource):
    """One pull-through cache rule per upstream registry, under the cluster's own prefix (two stacks in one account and
    region never claim the same prefix). The first pull of an image creates its repository in the account's registry
    and imports the image; later pulls are served from the region. The puller needs ecr:CreateRepository and
    ecr:BatchImportUpstreamImage for that (Amazon ECR User Guide, "IAM permissions required to sync an upstream
    registry"), granted here to the node role on the cache prefixes only."""

    prefixes: dict[str, str]
    # The account's registry, where the caches are pulled from: <account>.dkr.ecr.<region>.amazonaws.com.
    registry: str

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:images:ImageCache", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.prefixes = {u: cache_prefix(cfg.cluster_name, u) for u in cfg.images.pull_through_cache}
        account_id = aws.get_caller_identity().account_id
        self.registry = f"{account_id}.dkr.ecr.{cfg.region}.amazonaws.com"
        for upstream, prefix in self.prefixes.items():
            aws.ecr.PullThroughCacheRule(
                f"{name}-{upstream}",
                aws.ecr.PullThroughCacheRuleArgs(ecr_repository_prefix=prefix, upstream_registry_url=UPSTREAMS[upstream]),
                opts=child,
            )
        if self.prefixes:
            partition = aws.get_partition().partition
            repositories = [f"arn:{partition}:ecr:{cfg.region}:{account_id}:repository/{p}/*" for p in self.prefixes.values()]
            policy = aws.iam.Policy(
                f"{name}-fill",
                aws.iam.PolicyArgs(
                    description=f"Nodes of {cfg.cluster_name} fill the pull-through caches on a first pull",
                    policy=policy_document(
                        [{"Sid": "FillPullThroughCaches", "Effect": "Allow", "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"], "Resource": repositories}]
                    ),
                    tags=cfg.tags_for(f"{cfg.cluster_name}-image-cache"),
                ),
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-fill", aws.iam.RolePolicyAttachmentArgs(role=args.node_role_name, policy_arn=policy.arn), opts=child
            )
        self.register_outputs({"prefixes": self.prefixes})
