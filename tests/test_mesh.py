"""Istio, the gateway load balancer and mesh-wide mTLS as synthesized."""
from __future__ import annotations

import json

import pytest

from infra.lib import timing
from infra.config.pins import PINS
from tests.conftest import synth_of

SERVICE = "kubernetes:core/v1:Service"


def test_istio_chain_base_then_cni_and_istiod_then_gateway(stack):
    """The CNI agent matters to injected pods (the gateway's), not to istiod: the two install side by side."""
    base, cni, istiod, gateway = (stack.release(n) for n in ("istio-base", "istio-cni", "istiod", "istio-ingressgateway"))
    assert {r["inputs"]["version"] for r in (base, cni, istiod, gateway)} == {PINS["istio"]}
    assert stack.depends_on(cni, base) and stack.depends_on(istiod, base) and not stack.depends_transitively(istiod, cni)
    assert stack.depends_on(gateway, istiod) and stack.depends_on(gateway, cni)
    assert istiod["inputs"]["values"]["cni"] == {"enabled": True}


@pytest.mark.parametrize("stack_name, replicas, pdb", [("dev", 1, False), ("staging", 2, True), ("prod", 3, True)])
def test_istiod_highly_available_where_configured(stack_name, replicas, pdb):
    values = synth_of(stack_name).release("istiod")["inputs"]["values"]
    assert values["replicaCount"] == values["autoscaleMin"] == replicas
    assert values["global"]["defaultPodDisruptionBudget"]["enabled"] is pdb


def test_gateway_load_balancer(stack):
    svc = stack.one(SERVICE, "mesh-gateway-nlb")
    spec, annotations = svc["inputs"]["spec"], svc["inputs"]["metadata"]["annotations"]
    assert spec["type"] == "LoadBalancer" and spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["selector"] == {"istio": "ingressgateway"}
    sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "mesh-gateway-lb")
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-security-groups"] == sg["outputs"]["id"]
    [listener] = sg["inputs"]["ingress"]
    assert listener["fromPort"] == listener["toPort"] == spec["ports"][0]["port"] == 80
    assert stack.depends_on(svc, stack.release("aws-load-balancer-controller"))
    assert stack.depends_on(svc, stack.release("istio-ingressgateway"))
    # The contract's hostname is the one the load balancer controller reports on the Service.
    hostname = svc["outputs"]["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert stack.result.outputs["gateway"]["hostname"] == hostname
    assert stack.result.outputs["gateway"]["url"] == f"http://{hostname}"


@pytest.mark.parametrize("stack_name, scheme, cidrs", [("dev", "internet-facing", ["203.0.113.0/24"]), ("prod", "internal", ["10.30.0.0/16"])])
def test_gateway_scheme_and_listener_sources_per_environment(stack_name, scheme, cidrs):
    synth = synth_of(stack_name)
    annotations = synth.one(SERVICE, "mesh-gateway-nlb")["inputs"]["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == scheme
    assert synth.one("aws:ec2/securityGroup:SecurityGroup", "mesh-gateway-lb")["inputs"]["ingress"][0]["cidrBlocks"] == cidrs
    assert synth.result.outputs["gateway"]["scheme"] == scheme


def test_load_balancer_is_deleted_before_the_controller_cluster_and_network(stack):
    """Destroy runs in reverse dependency order: whatever the Service depends on outlives it."""
    svc = stack.one(SERVICE, "mesh-gateway-nlb")
    assert stack.depends_transitively(svc, stack.release("aws-load-balancer-controller"))
    assert stack.depends_transitively(svc, stack.one("eks:index:Cluster"))
    for subnet in stack.of_type("aws:ec2/subnet:Subnet"):
        assert stack.depends_transitively(svc, subnet), subnet["name"]


def _statements(document: dict) -> set[tuple]:
    as_tuple = lambda v: tuple(sorted(v if isinstance(v, list) else [v]))  # noqa: E731
    return {(st["Effect"], as_tuple(st["Action"]), as_tuple(st.get("Resource")), json.dumps(st.get("Condition"), sort_keys=True)) for st in document["Statement"]}


def test_load_balancer_controller_policy_is_the_published_one_for_the_pinned_version(stack):
    from tests.conftest import ROOT

    published = json.loads((ROOT / "schemas" / "iam" / f"aws-load-balancer-controller-{PINS['aws-load-balancer-controller']}-iam_policy.json").read_text())
    ours = json.loads(stack.one("aws:iam/policy:Policy", "mesh-lb-controller")["inputs"]["policy"])
    assert _statements(ours) == _statements(published)


def test_load_balancer_controller_identity_and_policy(stack):
    values = stack.release("aws-load-balancer-controller")["inputs"]["values"]
    assert values["clusterName"] == stack.result.outputs["cluster"]["name"]
    assert values["enableServiceMutatorWebhook"] is False
    identity = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "mesh-lb-controller")["inputs"]
    assert (identity["namespace"], identity["serviceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    doc = json.loads(stack.one("aws:iam/policy:Policy", "mesh-lb-controller")["inputs"]["policy"])
    deletes = [s for s in doc["Statement"] if "elasticloadbalancing:DeleteLoadBalancer" in s["Action"]]
    assert deletes and all("aws:ResourceTag/elbv2.k8s.aws/cluster" in json.dumps(s["Condition"]) for s in deletes)


def test_strict_mtls_and_no_istio_routing_objects(stack):
    peer = stack.result.manifests["peerauthentication--istio-system--default.yaml"]
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}
    assert not [m for m in stack.result.manifests.values() if m["apiVersion"].startswith("networking.istio.io")], "Gateway API only"
    istiod = stack.release("istiod")
    for r in stack.resources:
        if r["type"].startswith("kubernetes:security.istio.io"):
            assert stack.depends_on(r, istiod), r["name"]


def test_gateway_api_gateway_binds_the_istio_gateway_deployment(stack):
    gateway = stack.one("kubernetes:gateway.networking.k8s.io/v1:Gateway")
    spec = gateway["inputs"]["spec"]
    assert spec["gatewayClassName"] == "istio"
    # Istio's manual deployment: it adopts the chart's gateway, and creates no load balancer of its own.
    assert spec["addresses"] == [{"type": "Hostname", "value": "istio-ingressgateway.istio-ingress.svc.cluster.local"}]
    assert stack.release("istio-ingressgateway")["inputs"]["values"]["service"] == {"type": "ClusterIP"}
    [listener] = spec["listeners"]
    assert (listener["port"], listener["protocol"]) == (80, "HTTP") and "hostname" not in listener
    assert listener["allowedRoutes"]["namespaces"]["selector"] == {"matchExpressions": [{"key": "ml-platform.io/gateway-routes", "operator": "Exists"}]}
    routed = {r["inputs"]["metadata"]["name"] for r in stack.of_type("kubernetes:core/v1:Namespace") if "ml-platform.io/gateway-routes" in r["inputs"]["metadata"]["labels"]}
    assert routed >= {t["inputs"]["metadata"]["name"] for t in stack.of_type("kubernetes:core/v1:Namespace") if "ml-platform.io/team" in t["inputs"]["metadata"]["labels"]}
    crds = [c for c in stack.of_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition") if c["inputs"]["spec"]["group"] == "gateway.networking.k8s.io"]
    assert {c["inputs"]["spec"]["names"]["kind"] for c in crds} >= {"Gateway", "HTTPRoute", "GatewayClass", "ReferenceGrant"}
    for crd in crds:
        assert stack.depends_transitively(gateway, crd) and stack.depends_transitively(stack.release("istiod"), crd), "istiod starts with the CRDs present"
    assert stack.depends_on(gateway, stack.release("istio-ingressgateway"))
    attach = stack.result.outputs["gateway"]["attach"]
    assert attach["kind"] == "HTTPRoute" and attach["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ml-gateway", "namespace": "istio-ingress"}
    ]


def test_gateway_crds_are_the_vendored_gateway_api_release(stack):
    from infra.lib.upstream import crd_documents

    # The Gateway API's, and the Inference Extension's InferencePool (the release Istio 1.30 is built against).
    vendored = {d["metadata"]["name"]: d["spec"] for project in ("gateway-api", "gateway-api-inference-extension") for d in crd_documents(project)}
    installed = {c["inputs"]["metadata"]["name"]: c["inputs"]["spec"] for c in stack.of_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")
                 if c["name"].startswith("mesh-")}
    assert installed == vendored


def test_a_listener_per_named_host():
    from components.mesh import gateway_spec

    listeners = gateway_spec(["models.example.com", "api.example.com"])["listeners"]
    assert [(listener["name"], listener["hostname"]) for listener in listeners] == [("http-0", "models.example.com"), ("http-1", "api.example.com")]


def test_pods_on_karpenter_capacity_wait_for_the_cpu_pool(stack):
    cpu_pool = stack.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool")
    for release in ("istio-ingressgateway", "kube-prometheus-stack"):
        r = stack.release(release)
        assert stack.depends_on(r, cpu_pool), release
        assert r["inputs"]["timeout"] == timing.HELM_ON_NEW_NODES, release
