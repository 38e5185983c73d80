"""Kubeflow Pipelines in multi-user mode: the upstream manifests (vendored as rendered at the pin) created object by
object, with the run database on the platform's Aurora cluster and every artifact in one S3 bucket under a prefix
per team, reached through EKS Pod Identity. Each team's namespace is a KFP namespace: its runs execute there as the
team's runner, whose role reaches only the team's prefix. What the platform changes in the upstream objects is
changed here, in code, and listed in docs/app-teams/pipelines.md."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from infra.config import PlatformConfig
from infra.config.pins import PINS
from infra.lib import monitoring
from infra.lib.buckets import private_encrypted
from infra.lib.conventions import DASHBOARD_LABEL, DATABASE_CLIENT_LABEL, MONITORING_NAMESPACE, ROUTES_LABEL
from infra.lib.database import credentials_secret
from infra.lib.gang import queue_labels
from infra.lib.gateway_auth import require_token, token_check, ui_route
from infra.lib.interfaces import DatabaseInfo, GatewayInfo
from infra.lib.iam import POD_IDENTITY_TRUST, merged_policy, pod_identity, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service
from infra.lib.upstream import SCHEMAS, manifest_documents, object_group
from policies.rules.cost import BUDGETED_GIB_TAG
from policies.rules.workloads import API_TOKEN_REASON

NAMESPACE = "kubeflow"
MANIFEST = SCHEMAS / "upstream" / "kubeflow-pipelines" / PINS["kubeflow-pipelines"] / "platform-agnostic-multi-user.yaml"
# The API server's service account (upstream name) and the one its multi-user mode runs every run as, per namespace.
API_SERVICE_ACCOUNT = "ml-pipeline"
RUNNER_SERVICE_ACCOUNT = "default-editor"
# The upstream Secret name every KFP server reads the database credentials from (keys username, password).
DB_SECRET = "mysql-secret"
# The API server keeps pipeline definitions here; team prefixes are DNS labels, which never start with "_".
PLATFORM_PREFIX = "_kfp"
# Argo's archived step logs go under the team's own prefix (the runner's role writes them).
LOG_KEY_FORMAT = "{{workflow.namespace}}/_logs/{{workflow.name}}/{{pod.name}}"
UI_PATH = "/pipeline"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}

# The upstream objects the platform does not create, by name prefix, and why.
LEFT_OUT: dict[str, str] = {
    "mysql": "the run and metadata databases are on the platform's Aurora cluster",
    "ml-pipeline-mysql": "the run and metadata databases are on the platform's Aurora cluster",
    "seaweedfs": "artifacts are in S3",
    "ml-pipeline-seaweedfs": "artifacts are in S3",
    "mlpipeline-minio-artifact": "no static object-store keys: the servers and runners use Pod Identity roles",
    "metacontroller": "the per-namespace objects the profile controller would sync are created by this program",
    "meta-controller": "the per-namespace objects the profile controller would sync are created by this program",
    "kubeflow-metacontroller": "the per-namespace objects the profile controller would sync are created by this program",
    "compositecontrollers.metacontroller": "the per-namespace objects the profile controller would sync are created by this program",
    "controllerrevisions.metacontroller": "the per-namespace objects the profile controller would sync are created by this program",
    "decoratorcontrollers.metacontroller": "the per-namespace objects the profile controller would sync are created by this program",
    "kubeflow-pipelines-profile-controller": "it writes SeaweedFS users and MinIO keys per namespace; this program creates what a team needs",
    "cache-": "the v1 cache webhook: v2 pipelines cache in the driver; its deployer registers a webhook outside the graph",
    "kubeflow-pipelines-cache": "the v1 cache webhook: v2 pipelines cache in the driver; its deployer registers a webhook outside the graph",
    "service-cache-server": "the v1 cache webhook: v2 pipelines cache in the driver; its deployer registers a webhook outside the graph",
}
# Routed through the platform Gateway instead (an HTTPRoute), not the Kubeflow gateway these name.
LEFT_OUT_KINDS = {
    "VirtualService": "Kubeflow's own Istio gateway does not exist here; the UI has an HTTPRoute on the platform Gateway",
    # The platform routes with the Gateway API only; mesh-wide STRICT mTLS with Istio's automatic mTLS already makes
    # every call between sidecars mutual TLS, which is all these set.
    "DestinationRule": "mesh-wide STRICT mTLS already makes in-mesh calls ISTIO_MUTUAL; the platform has no Istio routing objects",
}

# Requests per container (CPU millicores, memory MiB): upstream's where it sets them, otherwise sized for a
# platform's worth of teams; memory limit = request, no CPU limit.
RESOURCES: dict[str, tuple[str, str]] = {
    "ml-pipeline-api-server": ("250m", "512Mi"),
    "ml-pipeline-ui": ("100m", "256Mi"),
    "ml-pipeline-persistenceagent": ("120m", "512Mi"),
    "ml-pipeline-scheduledworkflow": ("50m", "128Mi"),
    "ml-pipeline-viewer-crd": ("50m", "128Mi"),
    "ml-pipeline-visualizationserver": ("50m", "512Mi"),
    "metadata-writer/main": ("50m", "256Mi"),
    "metadata-grpc-deployment/container": ("100m", "256Mi"),
    "metadata-envoy-deployment/container": ("50m", "128Mi"),
    "workflow-controller": ("100m", "512Mi"),
    # The alpine init containers that wait for a port.
    "wait": ("10m", "32Mi"),
}
# Servers that never call the Kubernetes API: no token in their pods.
NO_API = {"metadata-envoy-deployment", "metadata-grpc-deployment", "ml-pipeline-visualizationserver"}
# Why the others keep theirs (their upstream ClusterRoles say what they do), on their pod templates for the policy pack.
API_TOKEN_REASONS = {
    "ml-pipeline": "creates Argo Workflows in team namespaces and authorizes callers with SubjectAccessReviews and TokenReviews",
    "ml-pipeline-persistenceagent": "watches Workflows and ScheduledWorkflows in every namespace to record runs",
    "ml-pipeline-scheduledworkflow": "turns ScheduledWorkflows into Workflows",
    "ml-pipeline-ui": "reads run pods' logs and events and manages Viewers",
    "ml-pipeline-viewer-crd": "turns Viewers into Deployments and Services",
    "metadata-writer": "watches run pods in every namespace and labels them",
    "workflow-controller": "creates and watches the run pods and Workflows",
}
# Probes upstream leaves out, on the ports the containers listen on.
TCP_PROBES: dict[str, int] = {"metadata-envoy-deployment/container": 9090}


@lru_cache(maxsize=1)
def upstream_objects() -> tuple[dict[str, Any], ...]:
    """The vendored manifests, parsed once per process (and once per file version, infra/lib/upstream.py)."""
    return manifest_documents(MANIFEST)


def left_out(obj: dict[str, Any]) -> Optional[str]:
    """Why the platform does not create this upstream object, or None when it does."""
    if obj["kind"] in LEFT_OUT_KINDS:
        return LEFT_OUT_KINDS[obj["kind"]]
    name = obj["metadata"]["name"]
    return next((why for prefix, why in LEFT_OUT.items() if name == prefix or name.startswith(prefix if prefix.endswith("-") else prefix + "-")
                 or (prefix.endswith(".metacontroller") and name.startswith(prefix))), None)


def s3_endpoint(region: str) -> str:
    return f"s3.{region}.amazonaws.com"


@dataclass(frozen=True)
class Settings:
    """What the platform puts into the upstream objects (Outputs where they are known only at deploy time)."""

    region: str
    bucket: str
    db_host: pulumi.Input[str]
    db_port: int
    # The gateway's workload identity, the only caller allowed to set the user header on the UI.
    gateway_principal: str
    # On every step's pod: the team queue's labels where Kueue admits runs.
    step_labels: dict[str, str] = field(default_factory=dict)


def _container_key(deployment: str, container: str) -> str:
    if container.startswith("wait-for-"):
        return "wait"
    return container if container in RESOURCES else f"{deployment}/{container}"


def _container(deployment: str, c: dict[str, Any], env: Callable[[list[dict]], list[dict]]) -> dict[str, Any]:
    key = _container_key(deployment, c["name"])
    cpu, memory = RESOURCES[key]
    out = {**c, "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}}
    if "env" in c:
        out["env"] = env(c["env"])
    if "livenessProbe" in c and "readinessProbe" not in c and "httpGet" in c["livenessProbe"]:
        # Argo's controller: ready when its health endpoint (the one its liveness probe reads) answers.
        out["readinessProbe"] = {"httpGet": c["livenessProbe"]["httpGet"], "periodSeconds": 10, "timeoutSeconds": 5}
    if key in TCP_PROBES and "readinessProbe" not in c:
        probe = {"tcpSocket": {"port": TCP_PROBES[key]}, "periodSeconds": 10, "timeoutSeconds": 2}
        out["readinessProbe"] = probe
        out["livenessProbe"] = {**probe, "initialDelaySeconds": 10, "failureThreshold": 6}
    return out


def _without_static_keys(env: list[dict]) -> list[dict]:
    """Drops every variable read from the MinIO key Secret (which is not created): the SDKs fall back to Pod Identity."""
    return [e for e in env if ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") != "mlpipeline-minio-artifact"]


def _api_server_env(settings: Settings) -> Callable[[list[dict]], list[dict]]:
    def env(items: list[dict]) -> list[dict]:
        replaced = {
            "OBJECTSTORECONFIG_SECURE": "true",
            "OBJECTSTORECONFIG_HOST": s3_endpoint(settings.region),
        }
        out = [{"name": e["name"], "value": replaced[e["name"]]} if e["name"] in replaced else e
               for e in _without_static_keys(items) if e["name"] != "OBJECTSTORECONFIG_PORT"]
        return out + [
            {"name": "OBJECTSTORECONFIG_REGION", "value": settings.region},
            {"name": "OBJECTSTORECONFIG_PIPELINEPATH", "value": f"{PLATFORM_PREFIX}/pipelines"},
        ]
    return env


def _ui_env(settings: Settings) -> Callable[[list[dict]], list[dict]]:
    def env(items: list[dict]) -> list[dict]:
        return _without_static_keys(items) + [{"name": "AWS_REGION", "value": settings.region}, {"name": "AWS_S3_ENDPOINT", "value": s3_endpoint(settings.region)}]
    return env


def _deployment(obj: dict[str, Any], env: Callable[[list[dict]], list[dict]]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    template = obj["spec"]["template"]
    pod = template["spec"]
    new_pod = {**pod, "containers": [_container(name, c, env) for c in pod["containers"]]}
    if name in NO_API:
        new_pod["automountServiceAccountToken"] = False
    if "initContainers" in pod:
        new_pod["initContainers"] = [_container(name, c, env) for c in pod["initContainers"]]
    annotations = dict(template["metadata"].get("annotations") or {})
    if name in METRICS_PORTS:
        annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORTS[name]), "prometheus.io/path": "/metrics"})
    if name in API_TOKEN_REASONS:
        annotations[API_TOKEN_REASON] = API_TOKEN_REASONS[name]
    new_template = {**template, "spec": new_pod, "metadata": {**template["metadata"], "annotations": annotations}}
    return {**obj, "spec": {**obj["spec"], "template": new_template}}


def artifact_repository(settings: Settings) -> str:
    """Argo's archived logs: S3 with the pod's own credentials (the team runner's role), under the team's prefix."""
    return yaml.safe_dump({
        "archiveLogs": True,
        "s3": {
            "endpoint": s3_endpoint(settings.region),
            "bucket": settings.bucket,
            "region": settings.region,
            "insecure": False,
            "useSDKCreds": True,
            "keyFormat": LOG_KEY_FORMAT,
        },
    }, sort_keys=False)


def needs_database(obj: dict[str, Any]) -> bool:
    """A server whose pods become ready only once the database credentials are in the namespace: it reads them, or
    an init container waits for a server that does (upstream's wait-for-* containers)."""
    pod = obj["spec"]["template"]["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    reads = any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == DB_SECRET for c in containers for e in c.get("env", []))
    return reads or any(c["name"].startswith("wait-for-") for c in pod.get("initContainers", []))


def _skip_await(obj: dict[str, Any]) -> dict[str, Any]:
    # The credentials Secret is written by External Secrets when it syncs, outside the graph's order: an await on
    # these pods (or on a Service's endpoints among them) would hang on it. `infra.status` reports them after `up`.
    return {**obj, "metadata": {**obj["metadata"], "annotations": {**(obj["metadata"].get("annotations") or {}), "pulumi.com/skipAwait": "true"}}}


def platform_objects(settings: Settings) -> list[dict[str, Any]]:
    """The upstream objects the platform creates, in upstream order, with the platform's changes applied."""
    database_pods = [o["spec"]["template"]["metadata"]["labels"] for o in upstream_objects()
                     if o["kind"] == "Deployment" and not left_out(o) and needs_database(o)]
    out = []
    for obj in upstream_objects():
        if left_out(obj):
            continue
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "ConfigMap" and name == "pipeline-install-config":
            obj = {**obj, "data": {**obj["data"], "mysqlHost": settings.db_host, "mysqlPort": str(settings.db_port), "bucketName": settings.bucket,
                                   **RESTRICTED_STEPS}}
        elif kind == "ConfigMap" and name == "workflow-controller-configmap":
            obj = {**obj, "data": _workflow_controller_config(obj["data"], settings)}
        elif kind == "AuthorizationPolicy" and name == "ml-pipeline-ui":
            rules = [
                {"from": [{"source": {"principals": [settings.gateway_principal]}}]} if "from" in r else r
                for r in obj["spec"]["rules"]
            ]
            obj = {**obj, "spec": {**obj["spec"], "rules": rules}}
        elif kind == "Deployment":
            env = {"ml-pipeline": _api_server_env(settings), "ml-pipeline-ui": _ui_env(settings)}.get(name, _without_static_keys)
            obj = _skip_await(_deployment(obj, env)) if needs_database(obj) else _deployment(obj, env)
        elif kind == "Service" and any(all(pod.get(k) == v for k, v in obj["spec"].get("selector", {}).items()) for pod in database_pods):
            obj = _skip_await(obj)
        out.append(obj)
    return out


# Team namespaces enforce Pod Security `restricted`: KFP 2.17 gives its own containers a restricted context but leaves
# the user's step container's user to the image (argocompiler/security_context.go) unless these are set, and a pod
# without runAsNonRoot would be refused.
RESTRICTED_STEPS = {"defaultSecurityContextRunAsNonRoot": "true", "defaultSecurityContextRunAsUser": "1000", "defaultSecurityContextRunAsGroup": "1000"}


def create(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The platform's own custom resources for the UI's access (route, mesh policies), from their manifests."""
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return k8s.apiextensions.CustomResource(name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], **fields, opts=opts)


def resource_name(prefix: str, obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{prefix}-{obj['kind'].lower()}-{ns + '-' if ns and ns != NAMESPACE else ''}{obj['metadata']['name']}"


def prefix_policy(bucket_arn: str, key_arn: str, prefix: str, sid: str) -> str:
    """Read, write and delete objects under one prefix, list only that prefix, use the bucket's key through S3."""
    return policy_document([
        {"Sid": f"{sid}List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}}},
        {"Sid": f"{sid}Objects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"{bucket_arn}/{prefix}/*"},
        {"Sid": f"{sid}Key", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": key_arn},
    ])


def runner_role_rules() -> list[dict[str, Any]]:
    """What a run's pods need in their namespace: Argo's executor reports results and reads its pod, the KFP
    driver and launcher read their config maps and create the step pods' volumes (upstream's pipeline-runner Role,
    narrowed to the run's own objects)."""
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch", "list"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["create", "delete", "get", "list", "watch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "list", "watch"]},
    ]


def launcher_config(root: str, region: str) -> dict[str, str]:
    """The team namespace's kfp-launcher ConfigMap: its default pipeline root and S3 through the pod's credentials."""
    providers = {"s3": {"default": {"endpoint": s3_endpoint(region), "region": region, "disableSSL": False, "credentials": {"fromEnv": True}}}}
    return {"defaultPipelineRoot": root, "providers": yaml.safe_dump(providers, sort_keys=False)}


def gateway_policies(cfg: PlatformConfig, gateway_selector: dict[str, str]) -> list[dict[str, Any]]:
    """Istio at the platform Gateway: tokens of the configured issuer validated, and required on the UI's path."""
    ui = cfg.kubeflow.pipelines.ui
    return [
        token_check("kubeflow-pipelines-jwt", ui, gateway_selector, PLATFORM_LABELS),
        require_token("kubeflow-pipelines-require-jwt", UI_PATH, ui, gateway_selector, PLATFORM_LABELS),
    ]


def team_network_policy(team: str) -> dict[str, Any]:
    """The team namespace denies by default: its runs may call the KFP API and the metadata service."""
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}}],
            "ports": [{"protocol": "TCP", "port": p} for p in (8887, 8888, 8080)],
        }],
    }


# Scraped by the platform's envoy-sidecars PodMonitor at each meshed pod's merged endpoint: Istio's agent reads the
# app's metrics where these annotations point (plain HTTP inside the pod) and serves them with Envoy's. A ServiceMonitor
# on the app port would be refused by the sidecar (STRICT mTLS), and excluding the API port from the sidecar would
# bypass KFP's own authorization policy.
METRICS_PORTS = {"ml-pipeline": 8888, "workflow-controller": 9090}
# Argo serves its metrics over self-signed TLS by default (docs/metrics.md, >= 3.6); the agent reads plain HTTP.
ARGO_METRICS_CONFIG = {"enabled": True, "path": "/metrics", "port": 9090, "secure": False}
RUN_DURATION_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 21600, 86400]


def run_metrics() -> dict[str, Any]:
    """A workflow-level histogram Argo emits when each run ends (`argo_workflows_` + name), by team and outcome."""
    return {"prometheus": [{
        "name": "pipeline_run_duration_seconds",
        "help": "Duration of Kubeflow pipeline runs by team and final status",
        "labels": [{"key": "team", "value": "{{workflow.namespace}}"}, {"key": "status", "value": "{{workflow.status}}"}],
        "histogram": {"buckets": RUN_DURATION_BUCKETS, "value": "{{workflow.duration}}"},
    }]}


def _workflow_controller_config(data: dict[str, Any], settings: "Settings") -> dict[str, Any]:
    defaults = yaml.safe_load(data["workflowDefaults"])
    defaults["spec"] = {**defaults["spec"], "metrics": run_metrics()}
    if settings.step_labels:
        # Argo merges them into each run's own podMetadata (util.MergeTo, a strategic merge): KFP's labels stay.
        defaults["spec"]["podMetadata"] = {"labels": settings.step_labels}
    return {**data, "artifactRepository": artifact_repository(settings), "metricsConfig": yaml.safe_dump(ARGO_METRICS_CONFIG, sort_keys=False),
            "workflowDefaults": yaml.safe_dump(defaults, sort_keys=False)}


def dashboard() -> dict[str, Any]:
    metric = "argo_workflows_pipeline_run_duration_seconds"
    panels = [
        ("Runs finished per hour by team and status", f"sum by (team, status) (increase({metric}_count[1h]))", "short"),
        ("Run duration p50 by team", f"histogram_quantile(0.5, sum by (le, team) (rate({metric}_bucket[6h])))", "s"),
        ("Run duration p95 by team", f"histogram_quantile(0.95, sum by (le, team) (rate({metric}_bucket[6h])))", "s"),
        ("Workflows by phase", "sum by (phase) (argo_workflows_gauge)", "short"),
    ]
    return monitoring.dashboard("ml-pipelines", "ML platform / Pipelines", [(t, e, u, "") for t, e, u in panels], since="now-24h")


@dataclass(frozen=True)
class PipelinesArgs:
    config: PlatformConfig
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    team_namespaces: dict[str, pulumi.Resource]
    # Team name -> the Kubernetes group its members act as (kubectl); they get KFP's edit role in their namespace.
    team_groups: dict[str, str]
    gateway: GatewayInfo
    # The Karpenter CPU NodePool: the servers run on general capacity.
    general_capacity: pulumi.Resource
    istiod: pulumi.Resource
    gateway_api_crds: pulumi.Resource
    monitoring_release: pulumi.Resource
    # The platform's Aurora cluster: KFP keeps its runs (mlpipeline) and ML Metadata (metadb) there.
    database: DatabaseInfo
    # By team with an S3 model store: the policy that publishes into it. A run's steps mount the store's publishing
    # claim through Mountpoint with the runner's own Pod Identity, so its role carries it.
    model_store_publish_policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)


class Pipelines(pulumi.ComponentResource):
    namespace = NAMESPACE
    runner_service_account = RUNNER_SERVICE_ACCOUNT
    token_check: Optional[pulumi.Resource] = None
    bucket: pulumi.Output[str]
    endpoint: Optional[pulumi.Output[str]]
    pipeline_roots: dict[str, str]
    namespace_resource: k8s.core.v1.Namespace

    def __init__(self, name: str, args: PipelinesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:pipelines:Pipelines", name, None, opts)
        cfg = args.config
        spec = cfg.kubeflow.pipelines
        assert spec.artifacts is not None
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps))  # noqa: E731
        bucket_name = spec.artifacts.bucket_name

        # The bucket and its key.
        key = encryption_key(
            f"{name}-artifacts", alias=f"{cfg.cluster_name}-pipeline-artifacts", description=f"Pipeline artifacts of {cfg.cluster_name}",
            tags=cfg.tags_for(f"{bucket_name}-key"), parent=self, service_use=[via_service("s3", cfg.region)],
            protect=spec.artifacts.protect,
        )
        bucket = aws.s3.Bucket(
            f"{name}-artifacts", bucket=bucket_name, force_destroy=False,
            tags={**cfg.tags_for(bucket_name), BUDGETED_GIB_TAG: str(spec.artifacts.budgeted_gib)},
            opts=pulumi.ResourceOptions(parent=self, protect=spec.artifacts.protect),
        )
        private_encrypted(f"{name}-artifacts", bucket, key.arn, aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="old-run-artifacts",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=spec.artifacts.expire_days),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=spec.artifacts.noncurrent_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7),
        ), parent=self)
        self.bucket = bucket.bucket

        # The namespace of the servers: meshed (KFP's own authorization policies need the callers' identities).
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={
                **PLATFORM_LABELS, "istio-injection": "enabled", "pod-security.kubernetes.io/enforce": "restricted", ROUTES_LABEL: "true",
                # The database credentials store serves only namespaces with this label.
                DATABASE_CLIENT_LABEL: "true",
            }),
            opts=k8s_opts(args.istiod),
        )
        self.namespace_resource = namespace
        db_secret = credentials_secret(
            DB_SECRET, NAMESPACE, args.database, cfg.database.secret_sync.refresh_interval,
            pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace]),
        )

        api_role = role_with_policies(
            f"{name}-api-server", trust=POD_IDENTITY_TRUST, tags=cfg.tags_for(f"{cfg.cluster_name}-kfp-api-server"), parent=self,
            policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: prefix_policy(a[0], a[1], PLATFORM_PREFIX, "PipelineDefinitions")),
            description="Kubeflow Pipelines API server: pipeline definitions under the platform prefix of the artifacts bucket",
        )
        api_identity = pod_identity(
            f"{name}-api-server", cluster_name=args.cluster_name, namespace=NAMESPACE, service_account=API_SERVICE_ACCOUNT,
            role=api_role.role, tags=cfg.tags_for(f"{cfg.cluster_name}-kfp-api-server"), parent=self,
        )

        settings = Settings(region=cfg.region, bucket=bucket_name, db_host=args.database.host, db_port=args.database.port, gateway_principal=args.gateway.principal,
                            # Each step's pod through its team's queue (Kueue's pod integration).
                            step_labels=queue_labels() if cfg.scheduling.gang == "kueue" else {})
        objects = platform_objects(settings)
        # The provider applies each group's objects one by one (each its own resource, awaited and judged alone) once
        # the group's dependencies exist: the CRDs first; configuration and RBAC in the namespace; the servers after
        # them, their CRDs, the database, their identity and their capacity; the mesh policies once istiod admits them.
        config_kinds = {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap", "PriorityClass"}
        groups: dict[str, list[dict[str, Any]]] = {"crds": [], "config": [], "servers": [], "database-servers": [], "mesh-policies": []}
        for o in objects:
            kind = o["kind"]
            group = ("crds" if kind == "CustomResourceDefinition" else "config" if kind in config_kinds
                     else "database-servers" if kind == "Deployment" and needs_database(o)
                     else "servers" if kind in ("Deployment", "Service") else "mesh-policies")
            groups[group].append(o)
        crds = object_group(f"{name}-crds", groups["crds"], k8s_opts())
        config = object_group(f"{name}-config", groups["config"], k8s_opts(namespace))
        servers_after = [namespace, crds, config, bucket, *api_role.attachments, api_identity, args.general_capacity]
        object_group(f"{name}-servers", groups["servers"], k8s_opts(*servers_after))
        object_group(f"{name}-database-servers", groups["database-servers"], k8s_opts(*servers_after, db_secret))
        object_group(f"{name}-mesh-policies", groups["mesh-policies"], k8s_opts(namespace, args.istiod))

        # Each team's namespace is a KFP namespace.
        self.pipeline_roots = {}
        for team, team_ns in sorted(args.team_namespaces.items()):
            root = spec.pipeline_root(team)
            self.pipeline_roots[team] = root
            labels = {**PLATFORM_LABELS, "ml-platform.io/team": team}
            meta = lambda n, t=team, lab=labels: k8s.meta.v1.ObjectMetaArgs(name=n, namespace=t, labels=lab)  # noqa: E731
            role = role_with_policies(
                f"{name}-{team}-runner", trust=POD_IDENTITY_TRUST, tags=cfg.tags_for(f"{cfg.cluster_name}-kfp-{team}"), parent=self,
                policy=pulumi.Output.all(bucket.arn, key.arn, args.model_store_publish_policies.get(team)).apply(
                    lambda a, t=team: merged_policy(prefix_policy(a[0], a[1], t, "TeamArtifacts"), *([a[2]] if a[2] else []))),
                description=f"Team {team}: its pipeline runs' artifacts and logs, under its own prefix of the artifacts bucket"
                + (", and publishing into its S3 model store" if team in args.model_store_publish_policies else ""),
            )
            runner = k8s.core.v1.ServiceAccount(f"{name}-{team}-runner", metadata=meta(RUNNER_SERVICE_ACCOUNT), opts=k8s_opts(team_ns))
            pod_identity(
                f"{name}-{team}-runner", cluster_name=args.cluster_name, namespace=team, service_account=RUNNER_SERVICE_ACCOUNT,
                role=role.role, tags=cfg.tags_for(f"{cfg.cluster_name}-kfp-{team}"), parent=self,
            )
            runner_role = k8s.rbac.v1.Role(f"{name}-{team}-runner", metadata=meta("kubeflow-pipelines-runner"), rules=runner_role_rules(), opts=k8s_opts(team_ns))
            k8s.rbac.v1.RoleBinding(
                f"{name}-{team}-runner", metadata=meta("kubeflow-pipelines-runner"),
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeflow-pipelines-runner"},
                subjects=[{"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT, "namespace": team}],
                opts=k8s_opts(runner, runner_role),
            )
            # KFP authorizes a caller by a SubjectAccessReview in the namespace: the team's members (by the token's
            # user claim), its kubectl group and its runner may edit its pipelines and runs there, nowhere else.
            subjects = [
                {"kind": "Group", "name": args.team_groups[team], "apiGroup": "rbac.authorization.k8s.io"},
                # In-cluster clients of the team (a run starting another, CI) call the API with the runner's token.
                {"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT, "namespace": team},
            ]
            users = spec.teams[team].users if team in spec.teams else []
            subjects += [{"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"} for u in users]
            k8s.rbac.v1.RoleBinding(
                f"{name}-{team}-edit", metadata=meta("kubeflow-pipelines-edit"),
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-pipelines-edit"},
                subjects=subjects, opts=k8s_opts(team_ns, config),
            )
            k8s.core.v1.ConfigMap(f"{name}-{team}-launcher", metadata=meta("kfp-launcher"), data=launcher_config(root, cfg.region), opts=k8s_opts(team_ns))
            k8s.core.v1.ConfigMap(
                f"{name}-{team}-metadata", metadata=meta("metadata-grpc-configmap"),
                data={"METADATA_GRPC_SERVICE_HOST": f"metadata-grpc-service.{NAMESPACE}", "METADATA_GRPC_SERVICE_PORT": "8080"},
                opts=k8s_opts(team_ns),
            )
            k8s.networking.v1.NetworkPolicy(f"{name}-{team}-to-kubeflow", metadata=meta("allow-kubeflow-pipelines"), spec=team_network_policy(team), opts=k8s_opts(team_ns))

        # Access: the UI through the Gateway with a token from the configured issuer, or port-forward only.
        self.endpoint = None
        if spec.ui.mode == "oidc":
            policies = [create(resource_name(name, p), p, k8s_opts(args.istiod)) for p in gateway_policies(cfg, args.gateway.selector)]
            # The RequestAuthentication: the Gateway checks the issuer's tokens and writes the user header.
            self.token_check = policies[0]
            route = ui_route("ml-pipeline-ui", NAMESPACE, UI_PATH, args.gateway.parent_ref, PLATFORM_LABELS, timeout="300s")
            # Opened once the token is required at the Gateway.
            create(resource_name(name, route), route, k8s_opts(namespace, args.gateway_api_crds, *policies))
            self.endpoint = args.gateway.url.apply(lambda u: f"{u}{UI_PATH}")

        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="dashboard-ml-pipelines", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}),
            data={"ml-pipelines.json": json.dumps(dashboard(), indent=2, sort_keys=True)},
            opts=k8s_opts(args.monitoring_release),
        )
        self.register_outputs({"bucket": self.bucket, "pipelineRoots": self.pipeline_roots})
