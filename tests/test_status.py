"""infra.status against a loopback stub of the Kubernetes API: never a network."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest

from components.cluster import kubeconfig as published_kubeconfig
from infra import status

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "stub-token"
T = "2026-12-05T10:00:00Z"


def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason or ("Ready" if ok else "NotReady"), "message": message, "lastTransitionTime": T}


def meta(name: str, namespace: str | None = None, labels: dict | None = None, generation: int = 1) -> dict:
    m = {"name": name, "uid": f"uid-{name}", "generation": generation, "creationTimestamp": T, "labels": labels or {}}
    return {**m, "namespace": namespace} if namespace else m


def deployment(name: str, ns: str, replicas: int, available: int, labels: dict | None = None) -> dict:
    status = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": available, "availableReplicas": available,
              "conditions": [cond("Available", available >= replicas, "MinimumReplicasAvailable" if available >= replicas else "MinimumReplicasUnavailable")]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, ns, labels), "spec": {"replicas": replicas}, "status": status}


def daemonset(name: str, ns: str, desired: int, available: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(name, ns), "spec": {},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": desired, "currentNumberScheduled": desired,
                       "updatedNumberScheduled": desired, "numberReady": available, "numberAvailable": available}}


def nodepool(name: str, ready: bool) -> dict:
    conditions = [cond("NodeClassReady", True), cond("ValidationSucceeded", True), cond("Ready", ready, "" if ready else "NodeClassNotReady", "" if ready else "EC2NodeClass not ready")]
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": meta(name), "spec": {}, "status": {"conditions": conditions}}


def nodeclaim(name: str, pool: str, ready: bool) -> dict:
    conditions = [cond("Launched", True), cond("Registered", ready, "" if ready else "NodeNotFound", "" if ready else "Node not registered with cluster"), cond("Initialized", ready), cond("Ready", ready)]
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": meta(name, labels={"karpenter.sh/nodepool": pool}), "spec": {}, "status": {"conditions": conditions}}


LIFECYCLE = {"app.kubernetes.io/part-of": "ml-platform", "app.kubernetes.io/component": "model-lifecycle", "ml-platform.io/team": "ml", "kueue.x-k8s.io/queue-name": "training"}


def job(name: str, done: bool, failed: bool = False) -> dict:
    status = ({"succeeded": 1, "startTime": T, "completionTime": T, "conditions": [cond("SuccessCriteriaMet", True), cond("Complete", True)]}
              if done else {"active": 1, "startTime": T})
    if failed:
        status = {"failed": 4, "startTime": T, "conditions": [cond("FailureTarget", True, "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                                                               cond("Failed", True, "BackoffLimitExceeded", "Job has reached the specified backoff limit")]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(name, "ml", LIFECYCLE), "spec": {"suspend": False}, "status": status}


def route(accepted: bool) -> dict:
    parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "platform", "namespace": "istio-ingress"}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta("sentiment", "ml"),
        "spec": {"parentRefs": [parent], "rules": [{"backendRefs": [{"name": "sentiment", "port": 80, "weight": 90}, {"name": "sentiment-canary", "port": 80, "weight": 10}]}]},
        "status": {"parents": [{"parentRef": parent, "controllerName": "istio.io/gateway-controller",
                                "conditions": [cond("Accepted", True, "Accepted"), cond("ResolvedRefs", accepted, "ResolvedRefs" if accepted else "BackendNotFound")]}]},
    }


def queue(kind: str, name: str, ns: str | None, active: bool) -> dict:
    reason = "Ready" if active else "FlavorNotFound"
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": kind, "metadata": meta(name, ns), "spec": {},
            "status": {"conditions": [cond("Active", active, reason, "Can admit new workloads" if active else "Can't admit new workloads: references missing ResourceFlavor(s): cpu")]}}


def cluster_state(ready: bool) -> dict[str, list[dict]]:
    """What the API lists: right after the first up (a GPU node launching, the canary waiting for its model), or converged."""
    model = {"app": "sentiment", "ml-platform.io/team": "ml"}
    return {
        "/apis/karpenter.sh/v1/nodepools": [nodepool("cpu", True), nodepool("nvidia", ready)],
        "/apis/karpenter.sh/v1/nodeclaims": [nodeclaim("cpu-x7k2p", "cpu", True), nodeclaim("nvidia-q9zt4", "nvidia", ready)],
        "/apis/apps/v1/deployments": [
            deployment("karpenter", "karpenter", 2, 2),
            deployment("istiod", "istio-system", 2, 2 if ready else 1),
            deployment("sentiment", "ml", 2, 2, {**model, "version": "stable", "ml-platform.io/model": "sentiment-v1"}),
            deployment("sentiment-canary", "ml", 1, 1 if ready else 0, {**model, "version": "canary", "ml-platform.io/model": "sentiment-v2"}),
        ],
        "/apis/apps/v1/daemonsets": [daemonset("aws-node", "kube-system", 3, 3), daemonset("fluent-bit", "logging", 3, 3)],
        "/apis/batch/v1/jobs": [job("bootstrap-sentiment-v2", ready), {**job("train-1", True), "metadata": meta("train-1", "ml", {"app": "train"})}],
        "/apis/gateway.networking.k8s.io/v1/httproutes": [route(ready)],
        "/apis/kueue.x-k8s.io/v1beta2/clusterqueues": [queue("ClusterQueue", "ml", None, ready)],
        "/apis/kueue.x-k8s.io/v1beta2/localqueues": [queue("LocalQueue", "training", "ml", ready)],
    }


class Stub:
    """Serves list paths from a sequence of states; each poll (its NodePool list comes first) moves to the next."""

    def __init__(self, states: list[dict[str, list[dict]]]):
        self.states, self.polls, self.seen = states, 0, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                stub.seen.append(url.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.reply(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401})
                if url.path == "/apis/karpenter.sh/v1/nodepools":
                    stub.polls += 1
                state = stub.states[min(stub.polls, len(stub.states)) - 1]
                if url.path not in state:
                    return self.reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
                items = state[url.path]
                for selector in parse_qs(url.query).get("labelSelector", []):
                    k, v = selector.split("=")
                    items = [i for i in items if i["metadata"].get("labels", {}).get(k) == v]
                self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})

            def reply(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def kubeconfig(server: str, token: str = TOKEN) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": server}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
        "users": [{"name": "stub", "user": {"token": token}}],
    })


def outputs(server: str, token: str = TOKEN) -> dict:
    def pool(name: str, taint: dict | None) -> dict:
        accelerator = {"taint": taint, "toleration": {**taint, "operator": "Equal"}, "extendedResource": "nvidia.com/gpu"} if taint else {}
        return {"name": name, "nodeSelector": {"ml-platform.io/pool": name}, **accelerator, "capacityTypes": ["on-demand"]}

    gpu_taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    return {
        "schemaVersion": "3.0.0", "environment": "staging", "region": "us-west-2",
        "cluster": {"name": "ml-staging", "endpoint": "https://ABC.gr7.us-west-2.eks.amazonaws.com", "version": "1.33",
                    "oidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/x", "oidcIssuer": "https://oidc.eks/x",
                    "securityGroupId": "sg-0123", "defaultStorageClass": "gp3"},
        "kubeconfig": kubeconfig(server, token),
        "network": {"vpcId": "vpc-1", "availabilityZones": ["a", "b"], "privateSubnetIds": ["subnet-1", "subnet-2"], "publicSubnetIds": ["subnet-3", "subnet-4"]},
        "nodePools": {"cpu": pool("cpu", None), "nvidia": pool("nvidia", gpu_taint)},
        "storage": {"efsFileSystemId": "fs-1", "defaultClass": "gp3", "classes": {}},
        "gateway": {"name": "istio-ingress/platform", "hostname": "lb", "url": "http://lb", "scheme": "internal", "hosts": ["*"],
                    "attach": {"kind": "HTTPRoute", "apiVersion": "gateway.networking.k8s.io/v1", "howTo": "-",
                               "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "platform", "namespace": "istio-ingress"}]}},
        "observability": {"grafanaUrl": "http://g", "prometheusUrl": "http://p", "alertmanagerUrl": "http://a", "grafanaAdminSecret": "monitoring/grafana"},
        "logging": {"platformLogGroup": "/p"},
        "cost": {"ceilingHourlyUsd": 10, "fixedHourlyUsd": 1, "budgetHourlyUsd": 20, "largestPool": "nvidia", "pricesDate": "2026-11-01"},
        "scheduling": {"servingPriorityClass": "serving", "trainingPriorityClass": "training"},
        "teams": {"ml": {"namespace": "ml", "iamRoleArn": "arn:aws:iam::123456789012:role/ml", "serviceAccounts": ["ml", "sentiment"],
                         "modelStore": {"claim": "model-store", "mountPath": "/models", "backend": "efs"}, "logGroup": "/ml"}},
        "workloads": {
            "ml/sentiment": {"kind": "serving", "team": "ml", "namespace": "ml", "service": "sentiment", "url": "http://lb/sentiment",
                             "models": {"stable": "sentiment@v1", "canary": "sentiment@v2", "canaryWeight": 10}},
            "ml/train": {"kind": "training", "team": "ml", "namespace": "ml"},
        },
    }


@pytest.fixture
def stub():
    servers = []

    def start(*states):
        servers.append(Stub(list(states)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_fixture_outputs_follow_the_published_contract():
    schema = json.loads((ROOT / "infra/contract/stack-outputs.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(outputs("http://127.0.0.1:1"))


def test_all_ready_exits_0_and_reports_each_area(stub, tmp_path, capsys):
    s = stub(cluster_state(True))
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 0
    out = capsys.readouterr().out
    assert "WAIT" not in out
    assert "pools/nvidia" not in out.splitlines()[-1]
    for line in ("ready  nvidia: Ready, 1 node", "ready  deployment istio-system/istiod: 2/2 available",
                 "ready  daemonset logging/fluent-bit: 3/3 available", "ready  ml/sentiment@v2: published (bootstrap-sentiment-v2 complete)",
                 "ready  ml/sentiment@v1: in the store (a serving pod found it)", "canary 10% (sentiment@v2)",
                 "ready  clusterqueue ml: active", "ready  localqueue ml/training: active"):
        assert line in out
    assert out.splitlines()[-1].startswith("11 of 11 ready")
    # Team Deployments are reported under serving, not as platform add-ons.
    assert "deployment ml/" not in out


def test_converging_exits_1_naming_what_is_not_ready(stub, tmp_path, capsys):
    s = stub(cluster_state(False))
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 1
    out = capsys.readouterr().out
    assert "WAIT   nvidia: NodePool not Ready: Ready=False (NodeClassNotReady: EC2NodeClass not ready)" in out
    assert "WAIT   deployment istio-system/istiod: 1/2 replicas available" in out
    assert "WAIT   ml/sentiment@v2: bootstrap-sentiment-v2 running (1 active, 0 failed attempts)" in out
    assert "sentiment-canary 10% 0/1 replicas available" in out
    assert "route gateway platform: ResolvedRefs=False (BackendNotFound)" in out
    assert "WAIT   clusterqueue ml: Active=False (FlavorNotFound: Can't admit new workloads: references missing ResourceFlavor(s): cpu" in out
    last = out.splitlines()[-1]
    assert last.startswith("5 of 11 ready; converging: ")
    for key in ("pools/nvidia", "platform/deployment istio-system/istiod", "models/ml/sentiment@v2", "serving/ml/sentiment", "queues/clusterqueue ml", "queues/localqueue ml/training"):
        assert key in last


def test_a_launching_node_is_converging(stub, tmp_path, capsys):
    state = cluster_state(True)
    state["/apis/karpenter.sh/v1/nodeclaims"] = [nodeclaim("nvidia-q9zt4", "nvidia", False)]
    s = stub(state)
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 1
    assert "WAIT   nvidia: 0 nodes, 1 launching (nvidia-q9zt4: Ready=False (NotReady))" in capsys.readouterr().out


def test_a_route_off_the_published_canary_weight_is_converging(stub, tmp_path, capsys):
    state = cluster_state(True)
    live = route(True)
    live["spec"]["rules"][0]["backendRefs"][0]["weight"], live["spec"]["rules"][0]["backendRefs"][1]["weight"] = 80, 20
    state["/apis/gateway.networking.k8s.io/v1/httproutes"] = [live]
    s = stub(state)
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 1
    assert "WAIT   ml/sentiment: route sends 20% to the canary, the stack says 10%" in capsys.readouterr().out


def test_wait_polls_until_ready(stub, tmp_path, capsys):
    s = stub(cluster_state(False), cluster_state(False), cluster_state(True))
    assert status.main(["--outputs", write(tmp_path, outputs(s.url)), "--wait", "--interval", "0.01", "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert s.polls == 3
    assert "ready  pools/nvidia: Ready, 1 node" in out
    assert "5 of 11 ready" in out and out.splitlines()[-1].startswith("11 of 11 ready")


def test_wait_gives_up_at_the_timeout(stub, tmp_path, capsys):
    s = stub(cluster_state(False))
    assert status.main(["--outputs", write(tmp_path, outputs(s.url)), "--wait", "--interval", "0.01", "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "timed out after 0.5s" in out and s.polls >= 2


def test_unreachable_api_exits_2_with_a_clear_error(tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now: the connection is refused.
    assert status.main(["--outputs", write(tmp_path, outputs(f"http://127.0.0.1:{port}"))]) == 2
    err = capsys.readouterr().err
    assert f"infra.status: cannot reach the Kubernetes API at http://127.0.0.1:{port}" in err


def test_refused_credentials_exit_2(stub, tmp_path, capsys):
    s = stub(cluster_state(True))
    assert status.main(["--outputs", write(tmp_path, outputs(s.url, token="expired"))]) == 2
    assert "refused /apis/karpenter.sh/v1/nodepools (401 Unauthorized): check the AWS credentials" in capsys.readouterr().err


def test_without_kueue_the_queues_are_not_waited_for(stub, tmp_path, capsys):
    state = cluster_state(True)
    del state["/apis/kueue.x-k8s.io/v1beta2/clusterqueues"], state["/apis/kueue.x-k8s.io/v1beta2/localqueues"]
    s = stub(state)
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 0
    assert "Kueue's API is not served" in capsys.readouterr().out


def test_stack_outputs_come_from_the_pulumi_cli(stub, tmp_path, monkeypatch, capsys):
    s = stub(cluster_state(True))
    (tmp_path / "outputs.json").write_text(json.dumps(outputs(s.url)))
    fake = tmp_path / "pulumi"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexec /bin/cat {tmp_path}/outputs.json\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert status.main(["--stack", "staging"]) == 0
    assert (tmp_path / "args").read_text().split() == ["stack", "output", "--json", "--show-secrets", "--stack", "staging"]


@pytest.mark.parametrize(
    "argv, data, message",
    [
        (["--stack", "staging"], None, "the pulumi CLI is not on PATH"),
        (["--outputs", "OUT"], {"environment": "dev"}, "the stack outputs have no `kubeconfig`"),
        (["--outputs", "OUT"], {**outputs("http://127.0.0.1:1"), "kubeconfig": "[secret]"}, "read the outputs with --show-secrets"),
        (["--outputs", "missing.json"], None, "--outputs missing.json: No such file or directory"),
    ],
)
def test_bad_outputs_exit_2_naming_the_problem(tmp_path, monkeypatch, capsys, argv, data, message):
    monkeypatch.setenv("PATH", str(tmp_path))
    if data is not None:
        argv = ["--outputs", write(tmp_path, data)]
    assert status.main(argv) == 2
    assert message in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        status.main(["--outputs", "x.json", "--timeout", "0"])
    assert e.value.code == 2
    assert "--timeout and --interval must be positive" in capsys.readouterr().err


def test_a_failed_lifecycle_job_is_named_with_its_reason(stub, tmp_path, capsys):
    state = cluster_state(True)
    state["/apis/batch/v1/jobs"] = [job("bootstrap-sentiment-v2", True), job("compile-sentiment-v2-inf2", False, failed=True)]
    s = stub(state)
    assert status.main(["--outputs", write(tmp_path, outputs(s.url))]) == 1
    assert "WAIT   ml/sentiment@v2: compile-sentiment-v2-inf2 failed (BackoffLimitExceeded: Job has reached the specified backoff limit)" in capsys.readouterr().out


def exec_outputs(server: str) -> dict:
    """The kubeconfig the stack publishes (components/cluster.py): a token from `aws eks get-token`."""
    data = outputs(server)
    data["kubeconfig"] = published_kubeconfig("ml-staging", server, "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", "us-west-2")
    return data


def test_the_published_kubeconfig_gets_its_token_from_aws_eks_get_token(stub, tmp_path, monkeypatch):
    s = stub(cluster_state(True))
    credential = {"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1", "spec": {},
                  "status": {"expirationTimestamp": "2099-01-01T00:00:00Z", "token": TOKEN}}
    aws = tmp_path / "aws"
    aws.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\necho '{json.dumps(credential)}'\n")
    aws.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert status.main(["--outputs", write(tmp_path, exec_outputs(s.url))]) == 0
    assert (tmp_path / "args").read_text().split() == ["eks", "get-token", "--cluster-name", "ml-staging", "--region", "us-west-2", "--output", "json"]


def test_without_the_aws_cli_the_error_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert status.main(["--outputs", write(tmp_path, exec_outputs("http://127.0.0.1:1"))]) == 2
    assert "the kubeconfig gets its token from `aws eks get-token --cluster-name ml-staging" in capsys.readouterr().err
