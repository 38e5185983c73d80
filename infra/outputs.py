"""The stack outputs: a versioned contract that app teams read through StackReference."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import pulumi

from components.cluster import Cluster
from components.gitops import GitOps
from components.images import ImageCache
from components.karpenter import Karpenter
from components.llm_serving import LlmServing
from components.logging import Logging
from components.mesh import Mesh
from components.model_store import ModelStores
from components.network import Network
from components.observability import Observability
from components.pipelines import Pipelines
from components.registry import Registry
from components.storage import Storage
from components.streaming import IAM_PORT, Streaming, team_topic
from components.tenancy import Tenancy
from components.workloads import WorkloadInfo, Workloads, deployment_name
from infra import cost
from infra.config import UPSTREAMS, PlatformConfig, ServingWorkload, runtimes_for
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PATH, MODEL_STORE_PUBLISH_CLAIM, SERVING_PRIORITY, TRAINING_PRIORITY
from infra.lib.gang import submission
from infra.lib.model_source import registered
from policies.rules.cost import Ceiling

if TYPE_CHECKING:  # for the annotations only: the stacks without KServe do not load it
    from components.serving import ServedModel, Serving

# 3.0: keys of features a stack does not have are absent rather than null (the Python SDK drops null-valued keys
# when it deserializes outputs, so a null could never reach a StackReference consumer as a null).
# 3.1: `gitops` (Argo CD delivery for app teams), present when the stack runs it.
# 3.2: `streaming` (the MSK bootstrap brokers and each team's topics), present when the stack runs MSK.
# 3.3: `imageCache` (the account's registry and the pull-through cache prefix of each upstream).
# 3.4: `teams.<team>.registry` (the team's MLflow registry) and `workloads.<key>.models.stableRegistry`/`canaryRegistry`.
# 3.5: `pipelines` (the Kubeflow Pipelines endpoint) and `teams.<team>.pipelines` (pipeline root, runner account).
# 3.6: `training` (Kubeflow Trainer's runtimes, Katib), present when the stack runs them.
# 3.7: `llmEndpoints` (each LLM workload's OpenAI-compatible endpoint), present when the stack serves an LLM.
# 3.8: `serving`, the serving path and the endpoint of each served model version.
# 3.9: `teams.<team>.modelStore.backend`, and on an S3 store its `bucket` and `publishClaim`.
# 3.10: `teams.<team>.queue`, what a team's run carries to reach its queue (the cluster refuses a Kueue run without).
SCHEMA_VERSION = "3.10.0"


def _queue(cfg: PlatformConfig, team: str) -> dict:
    via = submission(cfg.scheduling.gang, team)
    queue = {"gang": cfg.scheduling.gang, "name": via.queue, "labels": via.labels, "podAnnotations": via.pod_annotations}
    return {**queue, "schedulerName": via.scheduler_name} if via.scheduler_name else queue


def _model_store(cfg: PlatformConfig, team: str, model_stores: ModelStores) -> dict:
    """Where the team's pods read the store; on S3 also its bucket and the claim its publishers write through."""
    s3 = cfg.storage.model_stores[team].backend == "s3"
    return {
        "claim": MODEL_STORE_CLAIM,
        "mountPath": MODEL_STORE_PATH,
        "backend": cfg.storage.model_stores[team].backend,
        "bucket": model_stores.buckets[team] if s3 else None,
        "publishClaim": MODEL_STORE_PUBLISH_CLAIM if s3 else None,
    }


def _absent_not_null(value):
    """The value with every null-valued key removed, at any depth."""
    if isinstance(value, dict):
        return {k: _absent_not_null(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_absent_not_null(v) for v in value]
    return value


def _export(name: str, value) -> None:
    pulumi.export(name, pulumi.Output.from_input(value).apply(_absent_not_null))


def export(
    cfg: PlatformConfig,
    *,
    network: Network,
    cluster: Cluster,
    karpenter: Karpenter,
    storage: Storage,
    mesh: Mesh,
    observability: Observability,
    logging: Logging,
    tenancy: Tenancy,
    workloads: Workloads,
    serving: Optional[Serving],
    registry: Registry | None,
    llm: LlmServing,
    gitops: GitOps | None,
    images: ImageCache,
    ceiling: Ceiling,
    model_stores: ModelStores,
    pipelines: Optional[Pipelines] = None,
    streaming: Optional[Streaming] = None,
) -> None:
    served = serving.served if serving else {}
    _export("schemaVersion", SCHEMA_VERSION)
    _export("environment", cfg.environment)
    _export("region", cfg.region)
    _export(
        "cluster",
        {
            "name": cluster.name,
            "endpoint": cluster.endpoint,
            "version": cluster.version,
            "oidcProviderArn": cluster.oidc_provider_arn,
            "oidcIssuer": cluster.oidc_issuer,
            "securityGroupId": cluster.security_group_id,
            "defaultStorageClass": cluster.default_storage_class,
        },
    )
    _export("kubeconfig", cluster.kubeconfig)
    _export(
        "network",
        {
            "vpcId": network.vpc_id,
            "availabilityZones": network.availability_zones,
            "privateSubnetIds": network.private_subnet_ids,
            "publicSubnetIds": network.public_subnet_ids,
        },
    )
    _export(
        "nodePools",
        {
            name: {
                "name": pool.name,
                "nodeSelector": pool.labels,
                "taint": pool.taint,
                "toleration": {**pool.taint, "operator": "Equal"} if pool.taint else None,
                "extendedResource": pool.extended_resource,
                "deviceClass": pool.device_class,
                "capacityTypes": pool.capacity_types,
            }
            for name, pool in sorted(karpenter.node_pools.items())
        },
    )
    _export(
        "storage",
        {
            "efsFileSystemId": storage.file_system_id,
            "defaultClass": cluster.default_storage_class,
            "classes": {
                name: {"purpose": c.purpose, "reclaimPolicy": c.reclaim_policy, "accessModes": c.access_modes}
                for name, c in sorted(storage.classes.items())
            },
        },
    )
    _export(
        "gateway",
        {
            "name": mesh.gateway_name,
            "hostname": mesh.gateway_hostname,
            "url": mesh.gateway_info.url,
            "scheme": mesh.gateway_scheme,
            "hosts": mesh.gateway_info.hosts,
            "attach": {
                "kind": "HTTPRoute",
                "apiVersion": "gateway.networking.k8s.io/v1",
                "parentRefs": [mesh.gateway_info.parent_ref],
                "howTo": "create an HTTPRoute in your team namespace with spec.parentRefs set to the value above and a unique path prefix",
            },
        },
    )
    _export(
        "observability",
        {
            "grafanaUrl": observability.grafana_url,
            "prometheusUrl": observability.prometheus_url,
            "alertmanagerUrl": observability.alertmanager_url,
            "grafanaAdminSecret": observability.admin_secret,
        },
    )
    _export(
        "logging",
        {
            "platformLogGroup": logging.log_groups["platform"],
            "searchEndpoint": logging.search_endpoint,
            "dashboardsUrl": logging.dashboards_url,
        },
    )
    if images.prefixes:
        _export("imageCache", {"registry": images.registry, "prefixes": images.prefixes, "upstreams": {u: UPSTREAMS[u] for u in images.prefixes}})
    _export("cost", cost.output(cfg, ceiling))
    _export("scheduling", {"servingPriorityClass": SERVING_PRIORITY, "trainingPriorityClass": TRAINING_PRIORITY})
    if cfg.training.enabled:
        _export(
            "training",
            {
                "trainJobApiVersion": "trainer.kubeflow.org/v1alpha1",
                "runtimes": {r.pool: r.name for r in runtimes_for(cfg.training, cfg.node_pools.enabled())},
                "experimentApiVersion": "kubeflow.org/v1beta1",
                "katibUi": "kubectl -n kubeflow port-forward svc/katib-ui 8080:80",
            },
        )
    _export(
        "teams",
        {
            name: {
                "namespace": team.namespace,
                "iamRoleArn": team.iam_role_arn,
                "serviceAccounts": sorted(
                    [team.service_account]
                    + [w.service_account for w in [*workloads.workloads.values(), *served.values()] if w.team == name]
                ),
                "modelStore": _model_store(cfg, name, model_stores) if name in cfg.storage.model_stores else None,
                "logGroup": logging.log_groups[team.namespace],
                "registry": {"trackingUri": registry.urls[name]} if registry else None,
                "pipelines": {"pipelineRoot": pipelines.pipeline_roots[name], "serviceAccount": pipelines.runner_service_account} if pipelines else None,
                "queue": _queue(cfg, name),
            }
            for name, team in sorted(tenancy.teams.items())
        },
    )
    if gitops is not None:
        _export(
            "gitops",
            {
                "mode": cfg.gitops.mode,
                "endpoint": gitops.endpoint,
                "projects": {
                    team: {"project": project, "repoUrl": cfg.gitops.teams[team].repo_url, "path": f"{cfg.gitops.teams[team].path}/{cfg.environment}"}
                    for team, project in sorted(gitops.projects.items())
                },
            },
        )
    _export(
        "workloads",
        {
            **{
                key: {"kind": w.kind, "team": w.team, "namespace": w.namespace, "service": w.service, "url": w.url, "models": w.models}
                for key, w in workloads.workloads.items()
            },
            **{key: _served_workload(m) for key, m in served.items()},
        },
    )
    _export(
        "serving",
        {
            "engine": cfg.serving.mode,
            "models": {
                **{key: {"url": m.url, "namespace": m.namespace, "versions": m.versions} for key, m in served.items()},
                **{key: _deployed_model(w, workloads.workloads[key]) for key, w in _serving_workloads(cfg).items() if key in workloads.workloads},
            },
        },
    )
    if pipelines:
        _export("pipelines", {"endpoint": pipelines.endpoint, "namespace": pipelines.namespace, "artifactBucket": pipelines.bucket})
    if llm.endpoints:
        _export(
            "llmEndpoints",
            {
                key: {"team": e.team, "namespace": e.namespace, "model": e.model, "url": e.url, "versions": e.versions}
                for key, e in sorted(llm.endpoints.items())
            },
        )
    if streaming is not None:
        _export(
            "streaming",
            {
                "bootstrapBrokers": streaming.bootstrap_brokers,
                "port": IAM_PORT,
                "authentication": "SASL_IAM",
                "teams": {
                    team: {
                        "namespace": team,
                        "topics": streaming.topics[team],
                        "consumerGroups": [team_topic(team, g) for g in spec.consumer_groups],
                        "serviceAccount": spec.service_account,
                    }
                    for team, spec in sorted(cfg.streaming.teams.items())
                },
            },
        )


def _serving_workloads(cfg: PlatformConfig) -> dict[str, ServingWorkload]:
    return {f"{w.team}/{w.name}": w for w in cfg.workloads if isinstance(w, ServingWorkload)}


def _deployed_model(w: ServingWorkload, info: WorkloadInfo) -> dict:
    """A workload on the hand-built path: a Service per version, named as its Deployment."""
    versions = {}
    for t in w.tracks():
        service = deployment_name(w, t)
        versions[t.role] = {"service": service, "endpoint": f"http://{service}.{info.namespace}.svc.cluster.local",
                            "model": t.model.key if t.model else None, "registry": registered(t.registry), "weight": t.weight}
    return {"url": info.url, "namespace": info.namespace, "versions": versions}


def _served_workload(m: ServedModel) -> dict:
    """A workload served by KServe, in the shape of the hand-built path's entry."""
    stable, canary = m.versions["stable"], m.versions.get("canary")
    models = None
    if any(v["model"] or v["registry"] for v in m.versions.values()):
        models = {
            "stable": stable["model"],
            "canary": canary["model"] if canary else None,
            "canaryWeight": canary["weight"] if canary else 0,
            "stableRegistry": stable["registry"],
            "canaryRegistry": canary["registry"] if canary else None,
        }
    return {"kind": "serving", "team": m.team, "namespace": m.namespace, "service": stable["service"],
            "url": m.url, "models": models}
