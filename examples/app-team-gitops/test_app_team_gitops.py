"""The example team repository: each overlay rendered with a real Kustomize (kubectl's, pinned in requirements.txt),
validated against the platform's schemas, judged by the platform's policy pack, and within what its AppProject allows."""
from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from components.gitops import project_spec
from infra.config.gitops import TeamDelivery
from infra.offline.policy_check import check
from tests.conftest import synth_of
from tests.schemas import validate

HERE = Path(__file__).resolve().parent
KUBECTL = Path(sys.executable).parent / "kubectl"
ENVIRONMENTS = ("dev", "staging", "prod")
TEAM = "nlp"
# Rules about the platform's own graph (its provider, its CRD releases, its namespaces, its budget, its awaits) do not
# apply to objects Argo CD applies from a team's repository.
PLATFORM_GRAPH_RULES = {
    "kubernetes-single-provider", "custom-resource-after-its-crd", "team-namespace-guardrails", "cost-within-budget", "await-prerequisites-in-graph",
}


@lru_cache(maxsize=None)
def overlay(environment: str) -> tuple[dict, ...]:
    """What Argo CD applies for the environment: `kubectl kustomize overlays/<environment>`, as its repo server renders it."""
    run = subprocess.run([str(KUBECTL), "kustomize", str(HERE / "overlays" / environment)], capture_output=True, text=True, check=True)
    return tuple(d for d in yaml.safe_load_all(run.stdout) if d)


def test_kubectl_embeds_the_pinned_kustomize():
    version = subprocess.run([str(KUBECTL), "version", "--client"], capture_output=True, text=True, check=True).stdout
    assert "Client Version: v1.37.1" in version and "Kustomize Version: v5.8.1" in version


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_overlay_validates_against_the_platform_schemas(environment):
    objects = overlay(environment)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "HTTPRoute", "ConfigMap"}
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["namespace"] == TEAM


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_overlay_passes_the_platform_policy_pack(environment):
    records = [
        {"urn": f"urn:pulumi:{environment}::nlp-delivery::kubernetes:{o['apiVersion'] if '/' in o['apiVersion'] else 'core/' + o['apiVersion']}:{o['kind']}::{o['metadata']['name']}",
         "type": f"kubernetes:{o['apiVersion'] if '/' in o['apiVersion'] else 'core/' + o['apiVersion']}:{o['kind']}", "name": o["metadata"]["name"],
         "parent": None, "custom": True, "provider": None, "dependencies": [], "inputs": o, "outputs": o}
        for o in overlay(environment)
    ]
    found = [v for v in check(records, environment)["violations"] if v["policy"] not in PLATFORM_GRAPH_RULES]
    assert found == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_teams_project_admits_everything_the_overlay_deploys(environment):
    spec = project_spec(TEAM, TeamDelivery(repo_url="https://git.example.com/ml-teams/nlp-delivery.git"), "https://kubernetes.default.svc")
    allowed = {(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]}
    namespaces = {d["namespace"] for d in spec["destinations"]}
    for obj in overlay(environment):
        group = obj["apiVersion"].rpartition("/")[0]
        assert (group, obj["kind"]) in allowed, obj["kind"]
        assert obj["metadata"]["namespace"] in namespaces


def test_the_overlays_differ_only_in_image_and_scale():
    by_env = {e: {(o["kind"], o["metadata"]["name"].split("-")[0]): o for o in overlay(e)} for e in ENVIRONMENTS}
    image = lambda env: by_env[env][("Deployment", "sentiment")]["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert image("prod").endswith(":1.0.0-cpu") and image("staging").endswith(":1.1.0-cpu") and image("dev").endswith(":1.1.0-cpu")
    assert by_env["prod"][("Deployment", "data")]["spec"]["replicas"] == 2
    assert by_env["prod"][("HorizontalPodAutoscaler", "sentiment")]["spec"]["maxReplicas"] == 8
    assert set(by_env["dev"]) == set(by_env["prod"])


def test_the_route_attaches_to_the_platform_gateway_the_stack_publishes():
    parent_refs = synth_of("dev").result.outputs["gateway"]["attach"]["parentRefs"]
    for environment in ENVIRONMENTS:
        [route] = [o for o in overlay(environment) if o["kind"] == "HTTPRoute"]
        assert route["spec"]["parentRefs"] == parent_refs
        # Synced after the Deployment it sends traffic to.
        assert route["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"
