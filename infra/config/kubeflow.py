"""Kubeflow settings: one `kubeflow:` section, one switch for the layer, a sub-section per engine.

Pipelines (KFP) are modelled here; the training engines (`trainer`, `katib`) have their models in
infra/config/training.py and their fields below."""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from infra.config.base import DnsLabel, Model


def _bucket_name(value: str) -> str:
    """S3 general purpose bucket naming rules (S3 user guide, "General purpose bucket naming rules")."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
        raise ValueError("an S3 bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit")
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError("an S3 bucket name has no two adjacent dots and no dot next to a hyphen")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise ValueError("an S3 bucket name is not formatted as an IP address")
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if value.startswith(prefix):
            raise ValueError(f"an S3 bucket name does not start with {prefix!r}")
    for suffix in ("-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"):
        if value.endswith(suffix):
            raise ValueError(f"an S3 bucket name does not end with {suffix!r}")
    # Virtual-hosted TLS addressing fails on dotted names (the wildcard certificate covers one label).
    if "." in value:
        raise ValueError("use a bucket name without dots: HTTPS virtual-hosted addressing fails on dotted names")
    return value


BucketName = Annotated[str, AfterValidator(_bucket_name)]

# The platform key encrypts each object; a run's artifacts are read by later steps and by people for a while.
ArtifactDays = Annotated[int, Field(ge=1, le=3650)]


class PipelineArtifacts(Model):
    """The S3 bucket that holds every team's pipeline roots, under one prefix per team."""

    # Globally unique: include the account id, like ml-platform-prod-pipelines-111122223333.
    bucket_name: BucketName
    # Objects of old runs expire this many days after they were written.
    expire_days: ArtifactDays = 90
    # Overwritten or deleted objects (versioning keeps them) are removed this many days later.
    noncurrent_days: ArtifactDays = 30
    # The storage the cost ceiling counts for the bucket (S3 has no size limit to price).
    budgeted_gib: Annotated[int, Field(ge=1, le=10_000_000)] = 500
    # Pulumi refuses to delete a protected bucket and its key; unprotected, a destroy deletes them once empty.
    protect: bool = False


class PipelinesUi(Model):
    """Who reaches the KFP UI and API. `oidc`: through the platform Gateway at /pipeline, with a JWT from `issuer`
    that Istio checks (RequestAuthentication + AuthorizationPolicy); the claim `userClaim` names the user.
    `portForward`: not routed at all, `kubectl port-forward` only."""

    mode: Literal["oidc", "portForward"] = "portForward"
    issuer: Optional[Annotated[str, Field(pattern=r"^https://[^\s/]+(/[^\s]*)?$")]] = None
    # Defaults to the issuer's OpenID discovery document (Istio fetches it).
    jwks_uri: Optional[Annotated[str, Field(pattern=r"^https://[^\s/]+(/[^\s]*)?$")]] = None
    # The JWT's aud must be one of these.
    audiences: list[Annotated[str, Field(min_length=1)]] = []
    user_claim: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = "email"

    @model_validator(mode="after")
    def _oidc(self) -> "PipelinesUi":
        if self.mode == "oidc" and not self.issuer:
            raise ValueError("issuer is required with mode oidc: the OIDC issuer whose tokens Istio accepts")
        if self.mode == "oidc" and not self.audiences:
            raise ValueError("audiences is required with mode oidc: a token for another client must not open the UI")
        return self


class TeamPipelines(Model):
    # The team's members as the token's user claim names them: KFP lets them use the team's namespace only.
    users: list[Annotated[str, Field(min_length=1, max_length=256)]] = []
    # Where the team's runs write artifacts by default: inside s3://<bucketName>/<team>/.
    pipeline_root: Optional[Annotated[str, Field(pattern=r"^s3://[a-z0-9.-]+/[A-Za-z0-9!_.*'()/-]*$")]] = None


class PipelinesConfig(Model):
    enabled: bool = False
    # Required when enabled: KFP keeps every artifact there, no in-cluster object store.
    artifacts: Optional[PipelineArtifacts] = None
    ui: PipelinesUi = PipelinesUi()
    # Per-team overrides; every team gets pipelines, these only change its defaults.
    teams: dict[DnsLabel, TeamPipelines] = {}
    api_server_replicas: Annotated[int, Field(ge=1, le=5)] = 1

    @model_validator(mode="after")
    def _storage(self) -> "PipelinesConfig":
        if self.enabled and self.artifacts is None:
            raise ValueError("artifacts is required when pipelines are enabled: set artifacts.bucketName (KFP runs without an in-cluster object store)")
        if self.artifacts:
            for team, spec in self.teams.items():
                own = f"s3://{self.artifacts.bucket_name}/{team}/"
                root = spec.pipeline_root
                if root and (not root.startswith(own) or "/../" in root[len(own) - 1:] or root.endswith("/..")):
                    raise ValueError(f"teams.{team}.pipelineRoot {root!r} is outside the team's prefix {own}: a team's role reaches only its own prefix")
        return self

    def pipeline_root(self, team: str) -> str:
        """The team's default pipeline root (the launcher's defaultPipelineRoot in its namespace)."""
        assert self.artifacts is not None
        spec = self.teams.get(team)
        return (spec.pipeline_root if spec and spec.pipeline_root else None) or f"s3://{self.artifacts.bucket_name}/{team}/runs"


class KubeflowConfig(Model):
    # The layer's switch: off, none of its engines is deployed whatever their own settings say.
    enabled: bool = False
    pipelines: PipelinesConfig = PipelinesConfig()

    @property
    def pipelines_on(self) -> bool:
        return self.enabled and self.pipelines.enabled
