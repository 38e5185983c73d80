"""Rules for app-team delivery: what an Argo CD AppProject may let a team's repository deploy."""
from __future__ import annotations

from .base import MANDATORY, dig, resource_rule

APP_PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
TEAM_LABEL = "ml-platform.io/team"


@resource_rule(
    "app-project-fenced",
    "A team's AppProject deploys namespaced objects into the team's own namespace only: no cluster-scoped kinds, no "
    "wildcard or foreign destination namespace, no wildcard kind.",
    "Leave clusterResourceWhitelist empty, name the team's namespace in every destination and list kinds explicitly "
    "(components/gitops.py project_spec).",
    MANDATORY,
    [APP_PROJECT],
)
def app_project_fenced(props, args):
    team = dig(props, "metadata", "labels", TEAM_LABEL)
    if not team:
        yield f"AppProject has no {TEAM_LABEL} label: whose namespaces it may deploy to is unknown"
        return
    for entry in dig(props, "spec", "clusterResourceWhitelist", default=[]) or []:
        yield f"clusterResourceWhitelist allows cluster-scoped {entry.get('group') or 'core'}/{entry.get('kind')}"
    for i, dest in enumerate(dig(props, "spec", "destinations", default=[]) or []):
        namespace = dest.get("namespace")
        if namespace != team:
            yield f"destinations[{i}] namespace {namespace!r} is not team {team!r}'s namespace"
        if "*" in str(dest.get("server", "")) or "*" in str(dest.get("name", "")):
            yield f"destinations[{i}] reaches clusters by wildcard: only this cluster"
    for entry in dig(props, "spec", "namespaceResourceWhitelist", default=[]) or []:
        if "*" in str(entry.get("kind", "")) or "*" in str(entry.get("group", "")):
            yield f"namespaceResourceWhitelist allows {entry.get('group')}/{entry.get('kind')} by wildcard"
