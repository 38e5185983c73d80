"""Katib: hyperparameter tuning. Upstream's external-database overlay, rendered with Kustomize and vendored unmodified
(schemas/rendered/katib/), is created object by object, in groups applied in dependency order; its database is the
database `katib` on the platform's Aurora cluster. Each study of `training.katib.studies` becomes an Experiment whose
trials are Jobs of the team, submitted through its Kueue queue.

What the platform changes, here in code (tests/test_katib.py holds each):
- the `katib-mysql-secrets` Secret is dropped: the DB manager reads the user and password from the Secret the
  External Secrets Operator keeps from Aurora's managed secret (infra.lib.database.credentials_secret), and the
  host, port and database name as plain values;
- katib-config: trials are batch Jobs only (the Training Operator v1 kinds it also lists are not installed), the
  metrics collector sidecar and the suggestion services get requests, memory limit = request, no CPU limit (`-1`
  removes Katib's default) and the restricted security context (the collector copies the trial container's);
- the Deployments get requests and memory limits, probes where upstream has none, the general CPU pool; the
  DB manager no service account token;
- the pod-mutating webhook (which injects the metrics collector) sees only trial pods (an objectSelector on the
  label the program puts on them), so a down Katib controller never blocks a team's other pods;
- the namespace enforces the restricted Pod Security profile; the webhook certificate Secret, which the controller
  fills in itself, is not reset by later updates.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.config import PlatformConfig, Study
from infra.lib import headroom, monitoring
from infra.lib.accelerators import KINDS, POOL_LABEL
from infra.lib.conventions import DASHBOARD_LABEL, DATABASE_CLIENT_LABEL, GATEWAY_NAMESPACE, MONITORING_NAMESPACE, TEAM_LABEL, TRAINING_PRIORITY, UPSTREAM_LABEL
from infra.lib.database import credentials_secret
from infra.lib.gang import submission
from infra.lib.gateway_auth import USER_HEADER, require_token, ui_route
from infra.lib.interfaces import DatabaseInfo, GatewayInfo, TeamInfo
from infra.lib.upstream import manifest_documents, object_group

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "kubeflow"  # upstream's; its webhook's matchCondition names the controller's service account in it
API = "kubeflow.org/v1beta1"
DATABASE = "katib"
CREDENTIALS = "katib-db-credentials"
DB_MANAGER_PORT = 6789
# Where each study's suggestion service (a Deployment Katib creates in the team's namespace) serves the controller.
SUGGESTION_PORT = 6789
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# On every trial pod (from the Experiment's trial template): the only pods Katib's pod webhook mutates.
TRIAL_LABEL = "ml-platform.io/katib-trial"
INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# The MySQL client that creates the database: the official image's LTS line (the client needs no home or file of its own).
MYSQL_CLIENT_IMAGE = "mysql:8.4.6"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Requests and memory limits of Katib's own containers (upstream sets none), and of what it injects or starts.
RESOURCES = {
    "katib-controller": ("250m", "256Mi"),
    "katib-db-manager": ("100m", "128Mi"),
    "katib-ui": ("100m", "128Mi"),
}
# Counted outside the team's queue (infra/lib/headroom.py). `-1` removes the CPU limit Katib would otherwise set.
COLLECTOR = {
    "requests": {"cpu": headroom.KATIB_COLLECTOR_CPU, "memory": f"{headroom.KATIB_COLLECTOR_MEMORY_MIB}Mi"},
    "limits": {"cpu": "-1", "memory": f"{headroom.KATIB_COLLECTOR_MEMORY_MIB}Mi"},
}
SUGGESTION = {
    "requests": {"cpu": headroom.KATIB_SUGGESTION_CPU, "memory": f"{headroom.KATIB_SUGGESTION_MEMORY_MIB}Mi"},
    "limits": {"cpu": "-1", "memory": f"{headroom.KATIB_SUGGESTION_MEMORY_MIB}Mi"},
}


# libyaml when present: the render's CRDs make the pure-Python parser a visible share of a synth.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def rendered_path(version: str) -> Path:
    return ROOT / "schemas" / "rendered" / "katib" / version / "katib-external-db.yaml"


@lru_cache(maxsize=2)
def upstream_objects(version: str) -> tuple[dict[str, Any], ...]:
    """The vendored render, parsed once per process."""
    return manifest_documents(rendered_path(version))


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def katib_config(text: str) -> str:
    """The platform's katib-config from upstream's (see the module's docstring)."""
    config = yaml.load(text, Loader=LOADER)
    controller = config["init"]["controller"]
    controller["trialResources"] = ["Job.v1.batch"]
    controller["injectSecurityContext"] = True
    for collector in config["runtime"]["metricsCollectors"]:
        collector["resources"] = COLLECTOR
    for suggestion in config["runtime"]["suggestions"]:
        suggestion["resources"] = SUGGESTION
        suggestion["securityContext"] = RESTRICTED
    return yaml.dump(config, Dumper=DUMPER, sort_keys=False)


def _deployment(obj: dict[str, Any], database: dict[str, Any]) -> None:
    pod = obj["spec"]["template"]["spec"]
    # Out of the mesh even in Pipelines' meshed namespace: the API server calls the controller's webhooks in plain TLS.
    template_meta = obj["spec"]["template"].setdefault("metadata", {})
    template_meta["annotations"] = {**template_meta.get("annotations", {}), "sidecar.istio.io/inject": "false"}
    pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    [container] = pod["containers"]
    container["resources"] = _resources(*RESOURCES[obj["metadata"]["name"]])
    container["securityContext"]["readOnlyRootFilesystem"] = True
    name = obj["metadata"]["name"]
    if name == "katib-db-manager":
        pod["automountServiceAccountToken"] = False
        secret = {"DB_USER": "username", "DB_PASSWORD": "password"}
        container["env"] = [
            {"name": "DB_NAME", "value": "mysql"},
            *({"name": e, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS, "key": k}}} for e, k in secret.items()),
            {"name": "KATIB_MYSQL_DB_DATABASE", "value": DATABASE},
            {"name": "KATIB_MYSQL_DB_HOST", "value": database["host"]},
            {"name": "KATIB_MYSQL_DB_PORT", "value": database["port"]},
        ]
        container["readinessProbe"] = {"grpc": {"port": DB_MANAGER_PORT}, "periodSeconds": 10}
    if name == "katib-ui":
        probe = {"tcpSocket": {"port": "ui"}, "periodSeconds": 20}
        container["readinessProbe"], container["livenessProbe"] = probe, probe


CHANGED_KINDS = frozenset({"Namespace", "ConfigMap", "Deployment", "MutatingWebhookConfiguration", "ClusterRole"})


def platform_objects(version: str, database: dict[str, Any], ui_behind_gateway: bool = False) -> list[dict[str, Any]]:
    """Upstream's objects as the platform creates them; `database`: host (the writer endpoint, an output) and port.
    With the UI behind the Gateway's token check, the UI authorizes each caller (the user header) by a
    SubjectAccessReview, as upstream's Kubeflow install sets it up; otherwise it acts with its own rights."""
    out = []
    for upstream in upstream_objects(version):
        kind, name = upstream["kind"], upstream["metadata"]["name"]
        if kind == "Secret" and name.startswith("katib-mysql-secrets"):
            continue
        # Deep copies only of what changes below: the CRDs are most of the render's bulk.
        obj = copy.deepcopy(upstream) if kind in CHANGED_KINDS else dict(upstream)
        obj["metadata"] = {**upstream["metadata"], "labels": {**upstream["metadata"].get("labels", {}), UPSTREAM_LABEL: "katib", **PLATFORM_LABELS}}
        if kind == "Namespace":
            # Restricted pods; and the database store admits this namespace's ExternalSecret.
            obj["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "restricted", DATABASE_CLIENT_LABEL: "true"})
        elif kind == "ConfigMap" and name == "katib-config":
            obj["data"]["katib-config.yaml"] = katib_config(obj["data"]["katib-config.yaml"])
        elif kind == "Deployment":
            _deployment(obj, database)
            if name == "katib-ui" and ui_behind_gateway:
                [container] = obj["spec"]["template"]["spec"]["containers"]
                container["env"] = [*container.get("env", []), {"name": "APP_DISABLE_AUTH", "value": "false"}, {"name": "USERID_HEADER", "value": USER_HEADER}]
        elif kind == "ClusterRole" and name == "katib-ui" and ui_behind_gateway:
            obj["rules"] = [*obj["rules"], {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]
        elif kind == "MutatingWebhookConfiguration":
            for hook in obj["webhooks"]:
                if hook["name"] == "mutator.pod.katib.kubeflow.org":
                    hook["objectSelector"] = {"matchLabels": {TRIAL_LABEL: "true"}}
        out.append(obj)
    return out


UI_PATH = "/katib"  # where the UI serves (cmd/ui/v1beta1/main.go)
UI_PORT = 8080
UI_ROLE = "katib-ui-user"
# What the UI checks a caller for (pkg/ui/v1beta1/backend.go): their studies, what Katib makes of them, the trial
# templates (ConfigMaps) and the trials' logs, in the namespace the caller picks.
UI_USER_RULES = [
    (["kubeflow.org"], ["experiments"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
    (["kubeflow.org"], ["trials", "suggestions"], ["get", "list", "watch"]),
    ([""], ["configmaps"], ["get", "list", "create", "update", "delete"]),
    ([""], ["pods", "pods/log"], ["get", "list"]),
]


def ui_network_policy(gateway_selector: dict[str, str]) -> dict[str, Any]:
    """Only the Gateway's pods reach the UI's port."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "katib-ui-from-gateway", "namespace": NAMESPACE, "labels": PLATFORM_LABELS},
        "spec": {
            "podSelector": {"matchLabels": {"katib.kubeflow.org/component": "ui"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}}, "podSelector": {"matchLabels": gateway_selector}}],
                "ports": [{"protocol": "TCP", "port": UI_PORT}],
            }],
        },
    }


def experiment_spec(cfg: PlatformConfig, study: Study) -> dict[str, Any]:
    """The study's Experiment: its objective and search space, and a trial template of one Job through the team's
    queue, on the study's pool, printing `metric=value` lines the StdOut collector reads."""
    kind = KINDS[study.accelerator]
    memory = f"{int(study.resources.memory_gib * 1024)}Mi"
    requests, limits = {"cpu": study.resources.cpu, "memory": memory}, {"memory": memory}
    if kind.resource:
        requests[kind.resource] = limits[kind.resource] = str(study.accelerator_count)
    via = submission(cfg.scheduling.gang, study.team)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "priorityClassName": TRAINING_PRIORITY,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {POOL_LABEL: study.accelerator},
        "containers": [
            {
                "name": "training",
                "image": study.image,
                "command": list(study.command),
                **({"env": [{"name": k, "value": v} for k, v in sorted(study.env.items())]} if study.env else {}),
                "resources": {"requests": requests, "limits": limits},
                "securityContext": {**RESTRICTED, "readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if kind.toleration:
        pod["tolerations"] = [kind.toleration]
    if via.scheduler_name:
        pod["schedulerName"] = via.scheduler_name
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"labels": {**via.labels, TEAM_LABEL: study.team}},
        "spec": {
            **({"suspend": True} if via.suspend else {}),
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {TRIAL_LABEL: "true", TEAM_LABEL: study.team},
                    "annotations": {"sidecar.istio.io/inject": "false", **via.pod_annotations},
                },
                "spec": pod,
            },
        },
    }
    objective: dict[str, Any] = {"type": study.objective.type, "objectiveMetricName": study.objective.metric}
    if study.objective.goal is not None:
        objective["goal"] = study.objective.goal
    if study.objective.additional_metrics:
        objective["additionalMetricNames"] = list(study.objective.additional_metrics)
    return {
        "objective": objective,
        "algorithm": {"algorithmName": study.algorithm},
        "parallelTrialCount": study.parallel_trial_count,
        "maxTrialCount": study.max_trial_count,
        "maxFailedTrialCount": study.max_failed_trial_count,
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": [{"name": p.name, "parameterType": p.type, "feasibleSpace": p.feasible_space()} for p in study.parameters],
        "trialTemplate": {
            "primaryContainerName": "training",
            "trialParameters": [{"name": p.name, "reference": p.name} for p in study.parameters],
            "trialSpec": job,
        },
    }


def dashboard() -> dict[str, Any]:
    """Grafana: experiments and trials by team, from the Katib controller's metrics (labelled with the experiment's
    namespace, kept as scraped: the ServiceMonitor honours its labels)."""
    panels = [
        ("Trials running, by team", "sum by (namespace) (katib_trials_current{status=\"Running\"})", "{{namespace}}"),
        ("Trials succeeded per hour", "sum by (namespace) (increase(katib_trial_succeeded_total[1h]))", "{{namespace}} succeeded"),
        ("Trials failed per hour", "sum by (namespace) (increase(katib_trial_failed_total[1h]))", "{{namespace}} failed"),
        ("Trials without metrics per hour", "sum by (namespace) (increase(katib_trial_metrics_unavailable_total[1h]))", "{{namespace}}"),
        ("Experiments running, by team", "sum by (namespace) (katib_experiments_current{status=\"Running\"})", "{{namespace}}"),
        ("Experiments failed per day", "sum by (namespace) (increase(katib_experiment_failed_total[1d]))", "{{namespace}}"),
    ]
    return monitoring.dashboard("ml-tuning", "ML platform: tuning", [(t, e, "short", legend) for t, e, legend in panels], since="now-24h")


@dataclass(frozen=True)
class KatibArgs:
    config: PlatformConfig
    provider: k8s.Provider
    database: DatabaseInfo
    teams: dict[str, TeamInfo]
    queues: dict[str, pulumi.Resource]  # by team: its LocalQueue (or Volcano Queue)
    node_pools: dict[str, pulumi.Resource]
    priority_classes: dict[str, pulumi.Resource]
    monitoring_release: pulumi.Resource  # the ServiceMonitor CRD
    # Katib's controller, DB manager and UI run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource
    # The `kubeflow` namespace when Kubeflow Pipelines already creates it (one owner per object); Katib's otherwise.
    shared_namespace: Optional[k8s.core.v1.Namespace] = None
    # The UI on the platform Gateway, when Pipelines' UI is there behind a token check; port-forward only otherwise.
    ui: Optional["KatibUi"] = None


@dataclass(frozen=True)
class KatibUi:
    """The Gateway the UI is routed through, and the token check (Pipelines' RequestAuthentication) that writes the
    user header there; who, by the token's user claim, may use each team's studies in the UI."""
    gateway: GatewayInfo
    token_check: pulumi.Resource
    istiod: pulumi.Resource
    gateway_api_crds: pulumi.Resource
    users: dict[str, list[str]]


def resource_name(prefix: str, kind: str, namespace: Optional[str], name: str) -> str:
    """The Pulumi name of an object registered on its own."""
    return f"{prefix}-{kind.lower()}-{namespace + '-' if namespace else ''}{name}"


def own_resource_names(prefix: str, component: pulumi.Resource) -> Callable[[pulumi.ResourceTransformArgs], Optional[pulumi.ResourceTransformResult]]:
    """A transform giving each object a group applies (named `<group>:<namespace>/<name>` by the provider) an alias
    to the resource it was under `component` when registered on its own."""
    def transform(args: pulumi.ResourceTransformArgs) -> Optional[pulumi.ResourceTransformResult]:
        if args.type_.startswith("kubernetes:yaml/") or ":" not in args.name:
            return None
        namespace, _, name = args.name.split(":", 1)[1].rpartition("/")
        alias = pulumi.Alias(name=resource_name(prefix, args.type_.rsplit(":", 1)[1], namespace or None, name), parent=component)
        return pulumi.ResourceTransformResult(args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(aliases=[alias])))

    return transform


def _type(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return f"kubernetes:{api if '/' in api else 'core/' + api}:{obj['kind']}"


class Katib(pulumi.ComponentResource):
    controller: pulumi.Resource
    experiments: dict[str, pulumi.Resource]  # by "team/study"

    def __init__(self, name: str, args: KatibArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:katib:Katib", name, None, opts)
        cfg, info = args.config, args.database
        self._provider = args.provider
        base = lambda *deps, **kw: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps), **kw)  # noqa: E731

        objects = platform_objects(cfg.training.katib.version, {"host": info.host, "port": str(info.port)}, ui_behind_gateway=args.ui is not None)
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for obj in objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        [ns_obj] = by_kind["Namespace"]
        namespace = args.shared_namespace or self._create(name, ns_obj, base())
        # Katib's certificate generator writes the webhook certificate into this Secret: created empty, its data left
        # to the generator on every later `up`.
        [cert] = by_kind["Secret"]
        cert_secret = self._create(name, cert, base(namespace, ignore_changes=["data"]))
        # The provider applies each group's objects one by one (each its own resource, awaited and judged alone) once
        # the group's dependencies exist.
        # Each group's objects answer to the names they had when the platform registered them one by one: an `up` over
        # a stack made then adopts them in place, instead of creating them again and deleting the old resources (and
        # with the CRDs every Experiment).
        formerly = own_resource_names(name, self)
        group = lambda suffix, objs, *deps: object_group(f"{name}-{suffix}", objs, base(*deps, transforms=[formerly]))  # noqa: E731
        crds = group("crds", by_kind["CustomResourceDefinition"])
        setup = group("setup", [o for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service") for o in by_kind.get(kind, [])], namespace)
        # Registered before the controller starts, as upstream applies them: its certificate generator (OPA's
        # cert-controller) writes its CA into them when it creates the certificate. Until Experiments exist
        # nothing calls them (the pod webhook sees trial pods only).
        webhooks = group("webhooks", [o for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration") for o in by_kind[kind]], setup, cert_secret)

        credentials = credentials_secret(CREDENTIALS, NAMESPACE, info, cfg.database.secret_sync.refresh_interval, base(namespace))
        servers_after = [setup, cert_secret, crds, webhooks, args.general_capacity]
        [db_manager] = [o for o in by_kind["Deployment"] if o["metadata"]["name"] == "katib-db-manager"]
        # Its database exists once the init Job ran, and the Job's completion is not awaited: neither is this.
        db_manager["metadata"]["annotations"] = {**db_manager["metadata"].get("annotations", {}), **SKIP_AWAIT}
        servers = group("servers", [o for o in by_kind["Deployment"] if o is not db_manager], *servers_after)
        group("database-server", [db_manager], *servers_after, credentials)
        self._database_job(name, info, base(namespace, credentials, *info.ready, args.general_capacity))
        # The controller and the UI.
        self.controller = servers
        if args.ui:
            self._ui(name, args.ui, args.teams, namespace, servers, cfg)
        team_setup: dict[str, list[pulumi.Resource]] = {}
        for team_name in sorted({study.team for study in cfg.training.katib.studies}):
            team_setup[team_name] = self._team(name, args.teams[team_name])
        self.experiments = {}
        for study in cfg.training.katib.studies:
            team = args.teams[study.team]
            # Trials take hours and need the database: not awaited.
            self.experiments[f"{study.team}/{study.name}"] = k8s.apiextensions.CustomResource(
                f"{name}-{study.team}-{study.name}",
                api_version=API,
                kind="Experiment",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=study.name, namespace=team.namespace, labels={**PLATFORM_LABELS, TEAM_LABEL: study.team}, annotations=SKIP_AWAIT
                ),
                spec=experiment_spec(cfg, study),
                opts=base(
                    crds, webhooks, self.controller, *team_setup[study.team], team.namespace_resource, *team.guardrails, args.queues[study.team],
                    args.node_pools[study.accelerator], args.priority_classes[TRAINING_PRIORITY],
                    # Katib refuses every edit of a created Experiment but its trial counts, and those too once it
                    # has finished or run as many trials (its experiment validator): a changed study is a new one.
                    replace_on_changes=["spec"],
                    delete_before_replace=True,
                ),
            )
        k8s.apiextensions.CustomResource(
            f"{name}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="katib-controller", namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
            spec={
                "namespaceSelector": {"matchNames": [NAMESPACE]},
                "selector": {"matchLabels": {"katib.kubeflow.org/component": "controller"}},
                # Its series carry the experiment's namespace: kept, not replaced by the controller's.
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}],
            },
            opts=base(args.monitoring_release, self.controller),
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="dashboard-ml-tuning", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}),
            data={"ml-tuning.json": json.dumps(dashboard(), indent=2, sort_keys=True)},
            opts=base(args.monitoring_release),
        )
        self.register_outputs({"experiments": sorted(self.experiments)})

    def _ui(self, name: str, ui: KatibUi, teams: dict[str, TeamInfo], namespace: pulumi.Resource, server: pulumi.Resource, cfg: PlatformConfig) -> None:
        """The UI at UI_PATH on the Gateway: refused there without a valid token, reachable in the cluster from the
        gateway only (its pods are outside the mesh, so a network policy keeps other pods from sending a user header
        of their choice), and each team's UI users allowed what the UI does for them in the team's namespace."""
        opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=list(deps))  # noqa: E731
        policy = require_token("katib-ui-require-jwt", UI_PATH, cfg.kubeflow.pipelines.ui, ui.gateway.selector, PLATFORM_LABELS)
        required = self._create(name, policy, opts(ui.istiod))
        self._create(name, ui_network_policy(ui.gateway.selector), opts(namespace))
        # Opened once the token is required and checked, and the UI is up.
        self._create(name, ui_route("katib-ui", NAMESPACE, UI_PATH, ui.gateway.parent_ref, PLATFORM_LABELS), opts(namespace, ui.gateway_api_crds, required, ui.token_check, server))
        for team_name, users in sorted(ui.users.items()):
            team = teams[team_name]
            meta = k8s.meta.v1.ObjectMetaArgs(name=UI_ROLE, namespace=team.namespace, labels=PLATFORM_LABELS)
            role = k8s.rbac.v1.Role(
                f"{name}-{team_name}-ui", metadata=meta,
                rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=g, resources=r, verbs=v) for g, r, v in UI_USER_RULES],
                opts=opts(team.namespace_resource),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-{team_name}-ui", metadata=meta,
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=UI_ROLE),
                subjects=[k8s.rbac.v1.SubjectArgs(kind="User", name=u, api_group="rbac.authorization.k8s.io") for u in users],
                opts=opts(role),
            )

    def _team(self, name: str, team: TeamInfo) -> list[pulumi.Resource]:
        """What a team with studies needs: the label under which Katib injects its metrics collector into trial pods,
        and through the team's default-deny network policies, trials reporting to the DB manager and the controller
        asking the study's suggestion service (in the team's namespace) for trials."""
        opts = pulumi.ResourceOptions(parent=self, provider=self._provider, depends_on=[team.namespace_resource])
        injection = k8s.core.v1.NamespacePatch(
            f"{name}-{team.name}-injection",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=team.namespace, labels={INJECTION_LABEL: "enabled"}),
            opts=opts,
        )
        katib = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}}
        port = [{"protocol": "TCP", "port": DB_MANAGER_PORT}]
        policies = {
            "katib-trials": {
                "podSelector": {"matchLabels": {TRIAL_LABEL: "true"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{**katib, "podSelector": {"matchLabels": {"katib.kubeflow.org/component": "db-manager"}}}], "ports": port}],
            },
            "katib-suggestions": {
                "podSelector": {"matchExpressions": [{"key": "katib.kubeflow.org/suggestion", "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{**katib, "podSelector": {"matchLabels": {"katib.kubeflow.org/component": "controller"}}}], "ports": [{"protocol": "TCP", "port": SUGGESTION_PORT}]}],
            },
        }
        return [injection] + [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{team.name}-{policy}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=policy, namespace=team.namespace, labels=PLATFORM_LABELS),
                spec=spec,
                opts=opts,
            )
            for policy, spec in policies.items()
        ]

    def _create(self, name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """An object registered on its own: one with options of its own (the certificate's Secret) or outside the groups."""
        meta = obj["metadata"]
        return pulumi.CustomResource(_type(obj), resource_name(name, obj["kind"], meta.get("namespace"), meta["name"]), obj, opts=opts)

    def _database_job(self, name: str, info: DatabaseInfo, opts: pulumi.ResourceOptions) -> k8s.batch.v1.Job:
        """Creates the database `katib` once (the DB manager expects it and creates only its tables). Not awaited:
        it waits for the cluster's writer to accept connections, which the graph does not order."""
        env = [
            k8s.core.v1.EnvVarArgs(name="MYSQL_HOST", value=info.host),
            k8s.core.v1.EnvVarArgs(name="MYSQL_TCP_PORT", value=str(info.port)),
            k8s.core.v1.EnvVarArgs(name="USER", value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=CREDENTIALS, key="username"))),
            k8s.core.v1.EnvVarArgs(name="MYSQL_PWD", value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=CREDENTIALS, key="password"))),
        ]
        return k8s.batch.v1.Job(
            f"{name}-database",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="katib-create-database", namespace=NAMESPACE, labels=PLATFORM_LABELS, annotations=SKIP_AWAIT),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=20,
                active_deadline_seconds=3600,
                ttl_seconds_after_finished=24 * 3600,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=PLATFORM_LABELS, annotations={"karpenter.sh/do-not-disrupt": "true"}),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        automount_service_account_token=False,
                        security_context=k8s.core.v1.PodSecurityContextArgs(run_as_non_root=True, run_as_user=10001, run_as_group=10001, seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="create-database",
                                image=MYSQL_CLIENT_IMAGE,
                                command=["mysql", "-u", "$(USER)", "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE}"],
                                env=env,
                                resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "128Mi"}),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=opts,
        )

