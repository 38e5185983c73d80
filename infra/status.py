"""What is still converging after a `pulumi up`: `python -m infra.status --stack <env> [--wait --timeout S]`.

The first `up` creates the platform and leaves the rest to the cluster: Karpenter launches nodes, charts roll out,
lifecycle Jobs put models in the store, serving pods wait for them, Kueue activates queues. This command reads the
stack outputs (the published kubeconfig and what the stack serves) and the cluster, and says what is ready and what
is not. Exit 0 when everything is ready, 1 when something is still converging, 2 on bad usage or when the outputs or
the API cannot be read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

READY, CONVERGING, USAGE = 0, 1, 2
ROOT = Path(__file__).resolve().parent.parent
AREAS = ("pools", "platform", "models", "serving", "queues")
# components/workloads.py labels the lifecycle Jobs (bootstrap, compile) and each serving Deployment's model.
LIFECYCLE_SELECTOR = "app.kubernetes.io/component=model-lifecycle"
MODEL_LABEL = "ml-platform.io/model"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
# (connect, read) seconds per request; a private endpoint unreachable from here fails in seconds, not minutes.
REQUEST_TIMEOUT = (5, 30)


class StatusError(Exception):
    """Outputs or cluster unreadable: exit 2 with this message."""


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    ready: bool
    detail: str

    @property
    def key(self) -> str:
        return f"{self.area}/{self.name}"


# -- stack outputs ---------------------------------------------------------------------------------
def read_outputs(stack: Optional[str], outputs_file: Optional[Path]) -> dict[str, Any]:
    if outputs_file is not None:
        try:
            text = outputs_file.read_text()
        except OSError as e:
            raise StatusError(f"--outputs {outputs_file}: {e.strerror}") from e
        source = str(outputs_file)
    else:
        pulumi = shutil.which("pulumi")
        if pulumi is None:
            raise StatusError("the pulumi CLI is not on PATH: install it, or pass --outputs FILE with the output of `pulumi stack output --json --show-secrets`")
        cmd = [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            raise StatusError(f"`pulumi stack output --stack {stack}` failed: {run.stderr.strip() or run.stdout.strip()}")
        text, source = run.stdout, f"stack {stack}"
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as e:
        raise StatusError(f"{source}: not JSON ({e})") from e
    if not isinstance(outputs, dict):
        raise StatusError(f"{source}: expected a JSON object of stack outputs")
    for key in ("kubeconfig", "nodePools", "teams", "workloads"):
        if key not in outputs:
            raise StatusError(f"{source}: the stack outputs have no `{key}`; is this an ml-platform stack after `pulumi up`?")
    if "[secret]" in str(outputs["kubeconfig"]):
        raise StatusError(f"{source}: `kubeconfig` is hidden; read the outputs with --show-secrets")
    return outputs


def api_client(outputs: dict[str, Any]) -> tuple[client.ApiClient, str]:
    """The published kubeconfig: an exec credential (`aws eks get-token`), as `aws eks update-kubeconfig` writes."""
    raw = outputs["kubeconfig"]
    try:
        kubeconfig = yaml.safe_load(raw) if isinstance(raw, str) else raw
    except yaml.YAMLError as e:
        raise StatusError(f"stack output `kubeconfig` is not a kubeconfig: {e}") from e
    if not isinstance(kubeconfig, dict):
        raise StatusError("stack output `kubeconfig` is not a kubeconfig")
    for user in kubeconfig.get("users") or []:
        command = ((user.get("user") or {}).get("exec") or {}).get("command")
        # The client would only log a failed exec and go on without credentials.
        if command and shutil.which(command) is None:
            raise StatusError(
                f"the kubeconfig gets its token from `{command} {' '.join(user['user']['exec'].get('args') or [])}`, "
                f"and `{command}` is not on PATH: install it (for EKS, the AWS CLI v2)"
            )
    configuration = client.Configuration()
    try:
        config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    except (config.ConfigException, TypeError, KeyError, AttributeError) as e:
        raise StatusError(f"stack output `kubeconfig` is not a usable kubeconfig: {e}") from e
    # One retry: connection errors are reported, not retried for minutes.
    configuration.retries = urllib3.Retry(total=1, backoff_factor=0.2)
    return client.ApiClient(configuration), configuration.host


# -- the cluster -----------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """Every object the checks read, listed once per poll."""

    nodepools: Optional[list[dict]]
    nodeclaims: Optional[list[dict]]
    deployments: list[dict]
    daemonsets: list[dict]
    lifecycle_jobs: list[dict]
    httproutes: Optional[list[dict]]
    clusterqueues: Optional[list[dict]]
    localqueues: Optional[list[dict]]


class Cluster:
    def __init__(self, api: client.ApiClient, host: str):
        self.api, self.host = api, host

    def _list(self, path: str, label_selector: Optional[str] = None, optional: bool = False) -> Optional[list[dict]]:
        """Items of a list; None when the API (a CRD) is not served and `optional`."""
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            response = self.api.call_api(
                path, "GET", query_params=query, header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as e:
            if e.status == 404 and optional:
                return None
            if e.status in (401, 403):
                raise StatusError(
                    f"the Kubernetes API at {self.host} refused {path} ({e.status} {e.reason}): check the AWS credentials "
                    "(`aws sts get-caller-identity`, `aws eks get-token`) and that they have an access entry on the cluster"
                ) from e
            raise StatusError(f"the Kubernetes API at {self.host} answered {e.status} {e.reason} to {path}") from e
        except urllib3.exceptions.HTTPError as e:
            raise StatusError(f"cannot reach the Kubernetes API at {self.host}: {e}") from e
        data = response[0] if isinstance(response, tuple) else response
        return json.loads(data.data).get("items") or []

    def snapshot(self) -> Snapshot:
        return Snapshot(
            nodepools=self._list("/apis/karpenter.sh/v1/nodepools", optional=True),
            nodeclaims=self._list("/apis/karpenter.sh/v1/nodeclaims", optional=True),
            deployments=self._list("/apis/apps/v1/deployments"),
            daemonsets=self._list("/apis/apps/v1/daemonsets"),
            lifecycle_jobs=self._list("/apis/batch/v1/jobs", label_selector=LIFECYCLE_SELECTOR),
            httproutes=self._list("/apis/gateway.networking.k8s.io/v1/httproutes", optional=True),
            clusterqueues=self._list("/apis/kueue.x-k8s.io/v1beta2/clusterqueues", optional=True),
            localqueues=self._list("/apis/kueue.x-k8s.io/v1beta2/localqueues", optional=True),
        )


# -- readiness of one object -----------------------------------------------------------------------
def condition(obj: dict, kind: str) -> Optional[dict]:
    """A condition of an object's status, or of a route's parent status (which holds its conditions directly)."""
    conditions = obj["conditions"] if "conditions" in obj else (obj.get("status") or {}).get("conditions")
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def is_true(obj: dict, kind: str) -> bool:
    c = condition(obj, kind)
    return c is not None and c.get("status") == "True"


def why_not(obj: dict, kind: str) -> str:
    c = condition(obj, kind)
    if c is None:
        return f"no {kind} condition yet"
    return f"{kind}={c.get('status')}" + (f" ({c.get('reason')}: {c['message']})" if c.get("message") else f" ({c.get('reason')})" if c.get("reason") else "")


def name_of(obj: dict) -> str:
    m = obj["metadata"]
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]


def rollout(obj: dict) -> tuple[bool, str]:
    """A Deployment is rolled out as `kubectl rollout status` decides: current generation, all replicas updated and available."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return False, "the controller has not seen the latest spec yet"
    if updated < want:
        return False, f"{updated}/{want} replicas updated"
    if status.get("replicas", 0) > updated:
        return False, f"{status['replicas'] - updated} old replicas pending termination"
    if available < want:
        return False, f"{available}/{want} replicas available"
    return True, f"{available}/{want} available"


def daemon_rollout(obj: dict) -> tuple[bool, str]:
    status = obj.get("status") or {}
    want = status.get("desiredNumberScheduled", 0)
    updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return False, "the controller has not seen the latest spec yet"
    if updated < want:
        return False, f"{updated}/{want} pods updated"
    if available < want:
        return False, f"{available}/{want} pods available"
    return True, f"{available}/{want} available"


def job_state(job: dict) -> tuple[str, str]:
    """('complete' | 'failed' | 'pending', detail) of a lifecycle Job."""
    status = job.get("status") or {}
    if is_true(job, "Complete"):
        return "complete", "complete"
    if is_true(job, "Failed"):
        failed = condition(job, "Failed")
        return "failed", f"failed ({failed.get('reason')}: {failed.get('message')})"
    if (job.get("spec") or {}).get("suspend"):
        return "pending", "suspended, waiting for Kueue to admit it"
    if status.get("active"):
        return "pending", f"running ({status['active']} active, {status.get('failed', 0)} failed attempts)"
    return "pending", "waiting for its pod"


# -- the checks ------------------------------------------------------------------------------------
def team_namespaces(outputs: dict) -> set[str]:
    return {t["namespace"] for t in outputs["teams"].values()}


def check_pools(outputs: dict, snap: Snapshot) -> list[Check]:
    if snap.nodepools is None:
        return [Check("pools", "karpenter", False, "the NodePool API (karpenter.sh/v1) is not served: Karpenter's CRDs are missing")]
    pools = {p["metadata"]["name"]: p for p in snap.nodepools}
    checks = []
    for key, published in sorted(outputs["nodePools"].items()):
        name = published.get("name", key)
        pool = pools.get(name)
        if pool is None:
            checks.append(Check("pools", name, False, "NodePool not found"))
            continue
        claims = [c for c in snap.nodeclaims or [] if (c["metadata"].get("labels") or {}).get(NODEPOOL_LABEL) == name]
        launching = [c for c in claims if not is_true(c, "Ready")]
        nodes = f"{len(claims) - len(launching)} node{'s' if len(claims) - len(launching) != 1 else ''}"
        if not is_true(pool, "Ready"):
            checks.append(Check("pools", name, False, f"NodePool not Ready: {why_not(pool, 'Ready')}"))
        elif launching:
            first = launching[0]
            checks.append(Check("pools", name, False, f"{nodes}, {len(launching)} launching ({first['metadata']['name']}: {why_not(first, 'Ready')})"))
        else:
            checks.append(Check("pools", name, True, f"Ready, {nodes}" + ("" if claims else " (launched when pods need them)")))
    return checks


def check_platform(outputs: dict, snap: Snapshot) -> list[Check]:
    """Every Deployment and DaemonSet outside the team namespaces: charts, add-ons, controllers."""
    teams = team_namespaces(outputs)
    checks = []
    for kind, objs, judge in (("deployment", snap.deployments, rollout), ("daemonset", snap.daemonsets, daemon_rollout)):
        for obj in sorted(objs, key=name_of):
            if obj["metadata"].get("namespace") in teams:
                continue
            ok, detail = judge(obj)
            checks.append(Check("platform", f"{kind} {name_of(obj)}", ok, detail))
    return checks


def serving_workloads(outputs: dict) -> list[tuple[str, dict]]:
    return [(key, w) for key, w in sorted(outputs["workloads"].items()) if w.get("kind") == "serving"]


def check_models(outputs: dict, snap: Snapshot) -> list[Check]:
    """Nothing in the cluster records a published model (its manifest is a file in the store): a model is published
    when its lifecycle Jobs completed, or, without such Jobs (a training run publishes it, or their TTL removed
    them), when a serving pod of it is ready, since its wait-for-model init container passes only once it is there."""
    checks = []
    seen: set[tuple[str, str]] = set()
    for _, w in serving_workloads(outputs):
        ns = w["namespace"]
        for key in (w.get("models") or {}).get("stable"), (w.get("models") or {}).get("canary"):
            if not key or (ns, key) in seen:
                continue
            seen.add((ns, key))
            model, version = key.split("@", 1)
            prefixes = (f"bootstrap-{model}-{version}", f"compile-{model}-{version}-")
            jobs = [
                j for j in snap.lifecycle_jobs
                if j["metadata"].get("namespace") == ns
                and (j["metadata"]["name"] == prefixes[0] or j["metadata"]["name"].startswith(prefixes[1]))
            ]
            name = f"{ns}/{key}"
            if jobs:
                states = sorted((j["metadata"]["name"], *job_state(j)) for j in jobs)
                failed = [f"{n} {d}" for n, s, d in states if s == "failed"]
                pending = [f"{n} {d}" for n, s, d in states if s == "pending"]
                if failed or pending:
                    checks.append(Check("models", name, False, "; ".join(failed + pending)))
                else:
                    checks.append(Check("models", name, True, "published (" + ", ".join(f"{n} complete" for n, _, _ in states) + ")"))
                continue
            label = key.replace("@", "-")
            serving = [d for d in snap.deployments if d["metadata"].get("namespace") == ns and (d["metadata"].get("labels") or {}).get(MODEL_LABEL) == label]
            if any((d.get("status") or {}).get("readyReplicas", 0) > 0 for d in serving):
                checks.append(Check("models", name, True, "in the store (a serving pod found it)"))
            else:
                checks.append(Check("models", name, False, "not in the store yet: no lifecycle Job for it, and no serving pod has found it (a training run publishes it)"))
    return checks


def route_weights(route: dict) -> dict[str, int]:
    weights: dict[str, int] = {}
    for rule in (route.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            weights[ref["name"]] = weights.get(ref["name"], 0) + ref.get("weight", 1)
    return weights


def route_accepted(route: dict) -> tuple[bool, str]:
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return False, "no gateway has taken the route yet"
    for parent in parents:
        for kind in ("Accepted", "ResolvedRefs"):
            if not is_true(parent, kind):
                return False, f"gateway {parent.get('parentRef', {}).get('name', '?')}: {why_not(parent, kind)}"
    return True, "accepted"


def check_serving(outputs: dict, snap: Snapshot) -> list[Check]:
    routes = {name_of(r): r for r in snap.httproutes or []}
    deployments = {name_of(d): d for d in snap.deployments}
    checks = []
    for key, w in serving_workloads(outputs):
        ns, workload = w["namespace"], key.split("/", 1)[-1]
        # The stable Service (and Deployment) is named after the workload; contract 3.x may leave `service` out.
        service = w.get("service") or workload
        route = routes.get(f"{ns}/{workload}")
        weights = route_weights(route) if route else {}
        backends = sorted(weights) or [service]
        total = sum(weights.values()) or 1
        problems, parts = [], []
        for backend in backends:
            d = deployments.get(f"{ns}/{backend}")
            if d is None:
                problems.append(f"deployment {backend} not found")
                continue
            ok, detail = rollout(d)
            share = f" {round(100 * weights[backend] / total)}%" if backend in weights else ""
            (parts if ok else problems).append(f"{backend}{share} {detail}")
        if route is None:
            problems.append("HTTPRoute not found")
        else:
            accepted, detail = route_accepted(route)
            if not accepted:
                problems.append(f"route {detail}")
            models = w.get("models") or {}
            canary = [b for b in weights if b != service]
            if models.get("canary") or models.get("canaryWeight"):
                live = round(100 * sum(weights[b] for b in canary) / total)
                parts.append(f"canary {live}%" + (f" ({models['canary']})" if models.get("canary") else ""))
                if live != models.get("canaryWeight", 0):
                    problems.append(f"route sends {live}% to the canary, the stack says {models.get('canaryWeight', 0)}%")
        checks.append(Check("serving", key, not problems, "; ".join(problems + parts) if problems else ", ".join(parts)))
    return checks


def check_queues(outputs: dict, snap: Snapshot) -> list[Check]:
    if snap.clusterqueues is None:
        return [Check("queues", "kueue", True, "Kueue's API is not served: this stack schedules training without Kueue")]
    cluster_queues = {q["metadata"]["name"]: q for q in snap.clusterqueues}
    checks = []
    for team, t in sorted(outputs["teams"].items()):
        cq = cluster_queues.get(team)
        if cq is None:
            checks.append(Check("queues", f"clusterqueue {team}", False, "ClusterQueue not found"))
        else:
            checks.append(Check("queues", f"clusterqueue {team}", is_true(cq, "Active"), "active" if is_true(cq, "Active") else why_not(cq, "Active")))
        local = [q for q in snap.localqueues or [] if q["metadata"].get("namespace") == t["namespace"]]
        if not local:
            checks.append(Check("queues", f"localqueue {t['namespace']}", False, "no LocalQueue in the team namespace"))
        for q in sorted(local, key=name_of):
            checks.append(Check("queues", f"localqueue {name_of(q)}", is_true(q, "Active"), "active" if is_true(q, "Active") else why_not(q, "Active")))
    return checks


def evaluate(outputs: dict, snap: Snapshot) -> list[Check]:
    return [
        *check_pools(outputs, snap),
        *check_platform(outputs, snap),
        *check_models(outputs, snap),
        *check_serving(outputs, snap),
        *check_queues(outputs, snap),
    ]


# -- report ----------------------------------------------------------------------------------------
def summary(checks: list[Check]) -> str:
    ready = sum(c.ready for c in checks)
    waiting = [c.key for c in checks if not c.ready]
    return f"{ready} of {len(checks)} ready" + (f"; converging: {', '.join(waiting)}" if waiting else "")


def report(checks: list[Check], title: str) -> str:
    lines = [title]
    for area in AREAS:
        mine = [c for c in checks if c.area == area]
        if not mine:
            continue
        lines.append(f"{area}: {sum(c.ready for c in mine)}/{len(mine)} ready")
        lines += [f"  {'ready' if c.ready else 'WAIT '}  {c.name}: {c.detail}" for c in mine]
    lines.append(summary(checks))
    return "\n".join(lines)


def run(outputs: dict, cluster: Cluster, wait: bool, timeout: float, interval: float, out: Callable[[str], None]) -> int:
    title = f"ml-platform {outputs.get('environment', '?')} (cluster {(outputs.get('cluster') or {}).get('name', cluster.host)})"
    start = time.monotonic()
    checks = evaluate(outputs, cluster.snapshot())
    out(report(checks, title))
    if not wait or all(c.ready for c in checks):
        return READY if all(c.ready for c in checks) else CONVERGING
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            out(f"timed out after {timeout:g}s")
            out(report(checks, title))
            return CONVERGING
        time.sleep(min(interval, left))
        before = {c.key for c in checks if c.ready}
        checks = evaluate(outputs, cluster.snapshot())
        for c in checks:
            if c.ready and c.key not in before:
                out(f"  ready  {c.key}: {c.detail}")
        out(f"[{time.monotonic() - start:.0f}s] {summary(checks)}")
        if all(c.ready for c in checks):
            out(report(checks, title))
            return READY


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.status", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read the outputs with `pulumi stack output --json --show-secrets --stack STACK`")
    source.add_argument("--outputs", type=Path, metavar="FILE", help="a file holding that JSON instead")
    parser.add_argument("--wait", action="store_true", help="poll until everything is ready or --timeout passes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds --wait polls for (default 1800)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between polls (default 15)")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.interval <= 0:
        parser.error("--timeout and --interval must be positive")
    try:
        outputs = read_outputs(args.stack, args.outputs)
        api, host = api_client(outputs)
        with api:
            return run(outputs, Cluster(api, host), args.wait, args.timeout, args.interval, lambda s: print(s, flush=True))
    except StatusError as e:
        print(f"infra.status: {e}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
