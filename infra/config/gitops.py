"""Delivery for app teams: Argo CD (the EKS capability or the upstream chart) and, per team, what it may deliver."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from infra.config.base import DnsLabel, HelmChart, Model
from infra.config.pins import PINS

# Git over HTTPS only: no ssh:// or git@ forms (their host keys and credentials are a second trust path).
RepoUrl = Annotated[str, Field(pattern=r"^https://[a-z0-9.-]+(:\d+)?/[A-Za-z0-9._/-]+?(\.git)?$")]
RepoPrefix = Annotated[str, Field(pattern=r"^https://[a-z0-9.-]+(:\d+)?/[A-Za-z0-9._/-]*/$")]


def _inside_the_repository(value: str) -> str:
    if ".." in value.split("/"):
        raise ValueError("'..' would leave the repository; give a path inside it")
    return value


# A path in the team's repository: relative, inside it.
RepoPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"), AfterValidator(_inside_the_repository)]


class ArgoCdChart(HelmChart):
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["argo-cd"]
    # Two replicas of the API server, repo server and ApplicationSet controller (with PodDisruptionBudgets) and two
    # application controller shards. Redis stays one replica: Argo CD keeps only a cache there.
    high_availability: bool = False


class ArgoCdCapability(Model):
    # The IAM Identity Center instance Argo CD authenticates against (the capability has no local users).
    idc_instance_arn: Annotated[str, Field(pattern=r"^arn:aws:sso:::instance/ssoins-[0-9a-f]{16}$")]
    # Where that instance lives, if not in the stack's region.
    idc_region: Optional[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]] = None
    # Identity Center group ids with Argo CD's ADMIN role (platform operators).
    admin_group_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = []


class TeamDelivery(Model):
    # The team's deployment repository (docs/app-teams/gitops.md): `<path>/<environment>` is a Kustomize overlay.
    repo_url: RepoUrl
    revision: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,100}$")] = "main"
    path: RepoPath = "overlays"
    # The namespaces the team's applications may deploy to; each must be the team's own.
    namespaces: list[DnsLabel] = []
    # The repository needs credentials: a token in gitopsRepoTokens.<team> (a Pulumi secret).
    private: bool = False
    # Groups acting for the team in Argo CD: Identity Center group ids (capability) or SSO group names (chart).
    groups: list[Annotated[str, Field(min_length=1, max_length=128)]] = []
    # Sync on every change of the repository; without it a person syncs from the UI or CLI.
    auto_sync: bool = True


class GitOpsConfig(Model):
    enabled: bool = False
    mode: Literal["capability", "chart"] = "chart"
    capability: Optional[ArgoCdCapability] = None
    chart: ArgoCdChart = ArgoCdChart()
    # Repository URLs a team's repoUrl must start with (an organisation or group on a Git host).
    allowed_repo_prefixes: list[RepoPrefix] = []
    teams: dict[DnsLabel, TeamDelivery] = {}

    @model_validator(mode="after")
    def _consistent(self) -> "GitOpsConfig":
        problems = []
        if self.teams and not self.enabled:
            problems.append("teams lists deliveries but gitops.enabled is false; enable it or drop the teams")
        if self.enabled and self.mode == "capability" and self.capability is None:
            problems.append("capability is required with mode capability: set idcInstanceArn (the capability authenticates through IAM Identity Center)")
        for team, spec in self.teams.items():
            if not any(spec.repo_url.startswith(p) for p in self.allowed_repo_prefixes):
                problems.append(f"teams.{team}.repoUrl {spec.repo_url!r} is not under gitops.allowedRepoPrefixes {self.allowed_repo_prefixes}")
        if problems:
            raise ValueError("\n".join(problems))
        return self
