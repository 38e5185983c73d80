"""Container images: ECR pull-through cache rules for the public registries the platform pulls large images from."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from infra.config.base import Model

# The upstream registries ECR caches without credentials (Amazon ECR User Guide, "Sync an upstream registry with an
# Amazon ECR private registry"): the name used in the cache prefix -> the upstream registry URL.
UPSTREAMS = {"ecr-public": "public.ecr.aws", "k8s": "registry.k8s.io", "quay": "quay.io"}
Upstream = Literal["ecr-public", "k8s", "quay"]


class ImagesConfig(Model):
    # Each becomes a rule `<cluster>/<name>`: `<account>.dkr.ecr.<region>.amazonaws.com/<cluster>/<name>/<repository>:<tag>`
    # pulls through the account's registry, which fetches the image from upstream once and keeps it in the region.
    pull_through_cache: Annotated[list[Upstream], Field(max_length=3)] = ["ecr-public", "k8s", "quay"]


def cache_prefix(cluster_name: str, upstream: str) -> str:
    return f"{cluster_name}/{upstream}"
