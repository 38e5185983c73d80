"""How long a deploy takes: the longest chain of the graph, held so a needless serial edge shows up in review."""
from __future__ import annotations

import json

from infra.offline import critical_path
from tests.conftest import STACKS, synth_of

# prod from an empty account: the search domain, its access policy and the role-mapping Job that needs it; the
# cluster chain (control plane, system nodes, Karpenter, monitoring stack, custom-metrics adapter) is a minute shorter.
PROD_UP_MINUTES = 24.7
PROD_CHAIN = [
    ("aws:ec2/vpc:Vpc", "network"),
    ("aws:ec2/securityGroup:SecurityGroup", "logging-search"),
    ("aws:opensearch/domain:Domain", "logging-search"),
    ("aws:opensearch/domainPolicy:DomainPolicy", "logging-search"),
    ("kubernetes:batch/v1:Job", "logging-search-security"),
]


def test_prod_deploys_from_an_empty_account_in_25_minutes_along_this_chain(prod):
    up = prod.result.critical_path["up"]
    assert up["minutes"] == PROD_UP_MINUTES <= 25
    assert [(step["type"], step["name"]) for step in up["chain"]] == PROD_CHAIN
    assert sum(step["seconds"] for step in up["chain"]) == up["seconds"]


def test_every_stack_deploys_from_an_empty_account_in_25_minutes(stack):
    """The model lifecycle converges after `pulumi up`, not inside it (issue 20)."""
    up = stack.result.critical_path["up"]
    assert up["minutes"] <= 25, up["chain"]


def test_every_stack_has_an_up_and_a_destroy_path_with_known_durations():
    for stack in STACKS:
        report = synth_of(stack).result.critical_path
        assert report["up"]["seconds"] > report["destroy"]["seconds"] > 0
        assert report["unknownTypes"] == [], stack


def test_the_cluster_path_stays_under_25_minutes_too(prod):
    records = [r for r in prod.resources if not r["name"].startswith("logging-search")]
    up = critical_path.report(records)["up"]
    assert up["minutes"] <= 25 and ("aws:eks/cluster:Cluster", "cluster-eks-eksCluster") in [(s["type"], s["name"]) for s in up["chain"]]


def test_serving_rollouts_are_left_to_the_cluster(stack):
    """Model downloads, compiles and serving starts happen after `pulumi up` returns, off the chain."""
    kinds = ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job", "kubernetes:core/v1:Service")
    for record in [r for k in kinds for r in stack.of_type(k)]:
        if record["inputs"]["metadata"]["namespace"] == "nlp":
            assert record["inputs"]["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_an_unknown_type_counts_the_default_and_is_named():
    records = [
        {"urn": "a", "type": "aws:example/new:Thing", "name": "thing", "custom": True, "dependencies": [], "parent": None, "provider": None, "inputs": {}},
        {"urn": "b", "type": "aws:ec2/vpc:Vpc", "name": "vpc", "custom": True, "dependencies": ["a"], "parent": None, "provider": None, "inputs": {}},
    ]
    report = critical_path.report(records)
    assert report["unknownTypes"] == ["aws:example/new:Thing"]
    assert report["up"]["seconds"] == critical_path.DEFAULT + critical_path.CREATE["aws:ec2/vpc:Vpc"]
    assert [s["name"] for s in report["destroy"]["chain"]] == ["vpc", "thing"]


def test_a_dependency_on_a_component_waits_for_all_its_children():
    records = [
        {"urn": "c", "type": "ml-platform:x:Component", "name": "component", "custom": False, "dependencies": [], "parent": None, "provider": None, "inputs": {}},
        {"urn": "slow", "type": "aws:ec2/natGateway:NatGateway", "name": "nat", "custom": True, "dependencies": [], "parent": "c", "provider": None, "inputs": {}},
        {"urn": "after", "type": "aws:ec2/vpc:Vpc", "name": "after", "custom": True, "dependencies": ["c"], "parent": None, "provider": None, "inputs": {}},
    ]
    assert [s["name"] for s in critical_path.report(records)["up"]["chain"]] == ["nat", "after"]


def test_what_needs_only_the_api_server_does_not_wait_for_nodes(prod):
    """CRDs and webhook configurations install while the system nodes join; istiod does not wait for the CNI agent."""
    node_group = prod.one("aws:eks/nodeGroup:NodeGroup")
    for release in ("istio-base", "karpenter-crd"):
        assert not prod.depends_transitively(prod.release(release), node_group), release
    assert not prod.depends_transitively(prod.release("istiod"), prod.release("istio-cni"))
    assert prod.depends_on(prod.release("istio-ingressgateway"), prod.release("istio-cni"))


def test_the_synth_writes_critical_path_json(tmp_path):
    from infra import synth

    result = synth_of("prod").result
    synth.write_artifacts(result, tmp_path)
    assert json.loads((tmp_path / "critical-path.json").read_text()) == result.critical_path
    summary = synth._summary(result, tmp_path, 1.0)
    assert f"deploy time: up {PROD_UP_MINUTES} min from an empty account" in summary and "longest chain: network 5s" in summary


def k8s(kind: str, name: str, inputs: dict) -> dict:
    return {"urn": name, "type": f"kubernetes:{kind}", "name": name, "custom": True, "dependencies": [], "parent": None, "provider": None, "inputs": inputs}


def test_services_wait_as_the_engine_does():
    """service.go: endpoints settle 10 s; a LoadBalancer also waits for its address; headless ones do not wait."""
    seconds = lambda spec: critical_path.create_seconds(k8s("core/v1:Service", "s", {"spec": spec}))  # noqa: E731
    assert seconds({"type": "ClusterIP"}) == critical_path.SERVICE_SETTLE == 10
    assert seconds({"type": "LoadBalancer"}) == critical_path.SERVICE_LOAD_BALANCER
    assert seconds({"clusterIP": "None"}) == 2


def test_claims_daemonsets_and_quotas_wait_as_the_engine_does():
    late = k8s("storage.k8s.io/v1:StorageClass", "late", {"metadata": {"name": "gp3"}, "volumeBindingMode": "WaitForFirstConsumer"})
    claim = lambda cls: k8s("core/v1:PersistentVolumeClaim", "c", {"spec": {"storageClassName": cls}})  # noqa: E731
    binding = {"gp3": "WaitForFirstConsumer", "efs": "Immediate"}
    # awaiters.go: Pending is enough for a WaitForFirstConsumer class; anything else binds, within a hard 5 minutes.
    assert critical_path.create_seconds(claim("gp3"), binding) == 2
    assert critical_path.create_seconds(claim("efs"), binding) == critical_path.PVC_BIND < critical_path.HARD_LIMITS[critical_path.PVC]
    assert critical_path.report([late, {**claim("gp3"), "dependencies": ["late"]}])["up"]["seconds"] == 2 + 2
    pool_only = k8s("apps/v1:DaemonSet", "d", {"spec": {"template": {"spec": {"nodeSelector": {"ml-platform.io/accelerator": "neuron"}}}}})
    assert critical_path.create_seconds(pool_only) == 2
    assert critical_path.create_seconds(k8s("apps/v1:DaemonSet", "d", {"spec": {"template": {"spec": {}}}})) == 60
    assert critical_path.create_seconds(k8s("core/v1:ResourceQuota", "q", {})) == 2


def test_opensearch_is_reported_with_its_range(prod):
    report = prod.result.critical_path
    assert report["ranges"] == [{"type": "aws:opensearch/domain:Domain", "typicalMinutes": 18.0, "rangeMinutes": [15, 25], "note": "often longer"}]
    assert report["up"]["likelyUpToMinutes"] == round((report["up"]["seconds"] + 25 * 60 - 1080) / 60, 1)


def test_first_deploy_doc_shows_the_modelled_first_up_of_every_stack():
    from infra.offline.docs import FIRST_DEPLOY, first_deploy_table, with_first_deploy_table

    text = FIRST_DEPLOY.read_text()
    table = first_deploy_table({s: synth_of(s).result.critical_path for s in STACKS})
    assert with_first_deploy_table(text, table) == text, "docs/operators/first-deploy.md is stale: .venv/bin/python -m infra.offline.docs"


def test_no_await_outlasts_the_engines_limit(stack):
    assert stack.result.critical_path["overTimeout"] == []


def test_an_await_beyond_its_limit_is_reported():
    """A release whose pods take longer than Helm's 300 s default fails; so does a slow claim (a hard 5 minutes)."""
    release = k8s("helm.sh/v3:Release", "slow", {"chart": "kube-prometheus-stack"})
    release["type"] = critical_path.HELM_RELEASE
    [over] = critical_path.report([release])["overTimeout"]
    assert (over["name"], over["limitSeconds"]) == ("slow", 300) and over["seconds"] > 300
    assert critical_path.report([{**release, "inputs": {**release["inputs"], "timeout": 900}}])["overTimeout"] == []
    job = k8s("batch/v1:Job", "j", {"metadata": {"annotations": {"pulumi.com/timeoutSeconds": "30"}}})
    assert critical_path.limit_seconds(job) == 30
    assert critical_path.limit_seconds(k8s("core/v1:PersistentVolumeClaim", "c", {})) == 300
