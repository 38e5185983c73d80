"""Serving classic models through KServe: cert-manager (KServe's webhook certificate), KServe in Standard mode (raw
Deployments, no Knative) with Gateway API ingress, and per serving workload one InferenceService per version, the
team's weighted HTTPRoute in front of them, and an autoscaler on the signals the platform's metrics adapter serves.

A canary is two InferenceServices behind the team's route, split by weight. KServe v0.20.0's own Standard-mode canary
(`spec.canary`) needs a stable predictor with a storageUri or a runtime model and gives canaries fixed replicas
(pkg/apis/serving/v1beta1/inference_service_validation.go, validateCanarySpecs): the platform's predictors read the
team's store and every version autoscales. KServe's own route per InferenceService is therefore switched off
(`disableIngressCreation`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.config import ModelRef, PlatformConfig, ServingConfig, ServingWorkload, Track
from infra.lib import helm, timing
from infra.lib.accelerators import GPU_DEVICE_CLASS, KINDS, POOL_LABEL
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PATH, SERVING_PRIORITY
from infra.lib.interfaces import GatewayInfo, TeamInfo
from infra.lib.model_source import as_manifest, registered, registry_model_source
from infra.lib.routes import weighted_route

CERT_MANAGER_NAMESPACE = "cert-manager"
KSERVE_NAMESPACE = "kserve"
JETSTACK_CHARTS = "https://charts.jetstack.io"
KSERVE_CHARTS = "oci://ghcr.io/kserve/charts"
# KServe treats the first container of a custom predictor as the model server by this name.
MODEL_CONTAINER = "kserve-container"
INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"
RUN_AS = 10001
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# The predictor pods of an InferenceService carry this label with its name (KServe's InferenceServicePodLabelKey).
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
# Created and left to the cluster: a predictor is ready only once its node, image and model are (minutes, outside
# the graph's order); `kubectl get isvc` and the serving alerts report it.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# The pod's claim on its GPUs when they come through DRA (accelerators.gpuOperator.dra).
GPU_CLAIM = "gpu"


def cert_manager_values(sc: ServingConfig) -> dict[str, Any]:
    """The chart at the tag says appVersion v0.0.0 (the release build writes the real one), so every image is pinned."""
    tag = {"tag": sc.cert_manager_version}
    small = helm.resources("50m", "128Mi", chart_limits_cpu=False)
    return {
        # The CRDs come with the release (Helm keeps them on uninstall: certificates outlive a reinstall).
        "crds": {"enabled": True, "keep": True},
        "image": tag,
        "resources": helm.resources("100m", "256Mi", chart_limits_cpu=False),
        "webhook": {"image": tag, "resources": small},
        "cainjector": {"image": tag, "resources": helm.resources("100m", "256Mi", chart_limits_cpu=False)},
        "acmesolver": {"image": tag},
        # A post-install hook that waits until the webhook answers: the release is ready only when certificates can
        # be requested, so KServe's Certificate is admitted.
        "startupapicheck": {"image": tag, "resources": small},
    }


def kserve_values(sc: ServingConfig, gateway_parent_ref: dict[str, str]) -> dict[str, Any]:
    return {
        "kserve": {
            "version": sc.kserve_version,
            "controller": {
                "deploymentMode": "Standard",
                "imagePullPolicy": "IfNotPresent",
                "gateway": {
                    "ingressGateway": {
                        "enableGatewayApi": True,
                        "kserveGateway": f"{gateway_parent_ref['namespace']}/{gateway_parent_ref['name']}",
                        "className": "istio",
                        "createGateway": False,
                    },
                    # The platform's route per workload splits traffic between versions; KServe's would bypass it.
                    "disableIngressCreation": True,
                    "disableIstioVirtualHost": True,
                },
                "resources": helm.resources("100m", "300Mi"),
                "rbacProxy": {"resources": helm.resources("50m", "64Mi")},
            },
            # KServe's defaulter gives a predictor container without a CPU limit this one; empty, it adds none.
            "inferenceservice": {"resources": {"limits": {"cpu": ""}}},
            # An InferenceService that does not say otherwise gets no API token in its pods.
            "security": {"autoMountServiceAccountToken": False},
        }
    }


@dataclass(frozen=True)
class ModelLocation:
    """Where a version's model comes from, as the predictor pod sees it."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


def restricted() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def model_location(w: ServingWorkload, track: Track, registry_image: Optional[str] = None) -> ModelLocation:
    """A registered version: fetched from the team's registry as on the hand-built path (infra/lib/model_source.py).
    Otherwise the team's model store, read-only, and a wait until the version (and its Neuron artifact) is in it."""
    if track.registry:
        source = registry_model_source(track.registry, w.team, registry_image)
        return ModelLocation(
            volumes=[as_manifest(source.volume)],
            mounts=[as_manifest(source.mount)],
            env={"MODEL_DIR": source.model_dir},
            init_containers=[as_manifest(source.init_container)],
        )
    model: Optional[ModelRef] = track.model
    if not model:
        return ModelLocation()
    mount = {"name": "models", "mountPath": MODEL_STORE_PATH, "readOnly": True}
    target = ["--target", w.neuron_target] if w.neuron_target else []
    wait = {
        "name": "wait-for-model",
        "image": track.image,
        # The model-store protocol every serving image provides (examples/sentiment-service/modelstore.py).
        "command": ["python", "-m", "modelstore", "wait", "--store", MODEL_STORE_PATH, "--model", model.name, "--version", model.version,
                    *target, "--timeout-seconds", str(timing.NEURON_COMPILE + timing.MODEL_DOWNLOAD)],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": restricted(),
        "volumeMounts": [mount, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return ModelLocation(
        volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": MODEL_STORE_CLAIM, "readOnly": True}}],
        mounts=[mount],
        env={"MODEL_DIR": f"{MODEL_STORE_PATH}/{model.name}/{model.version}"},
        init_containers=[wait],
    )


def isvc_name(w: ServingWorkload, track: Track) -> str:
    return w.name if track.role == "stable" else f"{w.name}-canary"


def predictor_service(w: ServingWorkload, track: Track) -> str:
    """The Service KServe creates for a predictor in Standard mode (port 80 to the container's first port)."""
    return f"{isvc_name(w, track)}-predictor"


def _probe(w: ServingWorkload, period: int, failures: int) -> dict[str, Any]:
    action = {"httpGet": {"path": w.probe.path, "port": "http"}} if w.probe.path else {"tcpSocket": {"port": "http"}}
    return {**action, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 5}


def container_resources(w: ServingWorkload, claimed: bool) -> dict[str, Any]:
    """`claimed`: the GPUs come through the pod's DRA claim instead of the device plugin's extended resource."""
    memory = f"{int(w.resources.memory_gib * 1024)}Mi"
    requests, limits = {"cpu": w.resources.cpu, "memory": memory}, {"memory": memory}
    resource = KINDS[w.accelerator].resource
    if claimed:
        return {"requests": requests, "limits": limits, "claims": [{"name": GPU_CLAIM}]}
    if resource:
        requests[resource] = limits[resource] = str(w.accelerator_count)
    return {"requests": requests, "limits": limits}


def gpu_claim_template_spec(count: int) -> dict[str, Any]:
    return {"spec": {"devices": {"requests": [{"name": GPU_CLAIM, "exactly": {"deviceClassName": GPU_DEVICE_CLASS, "count": count}}]}}}


def predictor_spec(w: ServingWorkload, track: Track, claim_template: Optional[str] = None, registry_image: Optional[str] = None) -> dict[str, Any]:
    """A custom predictor: the team's image with the runtime of its model format (infra/config/serving.py RUNTIMES);
    with `claim_template`, its GPUs claimed through DRA from that ResourceClaimTemplate; a registered version is
    fetched with `registry_image`."""
    location = model_location(w, track, registry_image)
    env = {**w.env, **location.env, **({"NEURON_TARGET": w.neuron_target} if w.neuron_target else {})}
    kind = KINDS[w.accelerator]
    selector = {POOL_LABEL: w.accelerator, **({INSTANCE_FAMILY: w.neuron_target} if w.neuron_target else {})}
    spec: dict[str, Any] = {
        "minReplicas": track.min_replicas,
        "maxReplicas": track.max_replicas,
        # One pod more, none less, while a version rolls out: what the team's quota leaves room for (infra/lib/headroom.py).
        "deploymentStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "serviceAccountName": w.name,
        "automountServiceAccountToken": False,
        "priorityClassName": SERVING_PRIORITY,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": selector,
        # Where the app's metrics are: the sidecar agent merges them into its endpoint (as on the Deployment path).
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(w.metrics_port), "prometheus.io/path": "/metrics"},
        # KServe sets `app` on the pods itself (isvc.<name>-predictor, its Service's selector).
        "labels": {"version": track.role},
        "containers": [
            {
                "name": MODEL_CONTAINER,
                "image": track.image,
                # The first port is the one KServe's Service sends port 80 to.
                "ports": [
                    {"name": "http", "containerPort": w.port, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": w.metrics_port, "protocol": "TCP"},
                ],
                "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                "resources": container_resources(w, claimed=bool(claim_template)),
                "securityContext": restricted(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *location.mounts],
                # Loading a model can take minutes; liveness only starts once the startup probe passed.
                "startupProbe": _probe(w, 10, max(1, w.probe.startup_seconds // 10)),
                "readinessProbe": _probe(w, 10, 3),
                "livenessProbe": _probe(w, 20, 3),
            }
        ],
        # The only emptyDir: scratch space for a read-only root filesystem.
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, *location.volumes],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {ISVC_POD_LABEL: isvc_name(w, track)}},
            }
        ],
    }
    if location.init_containers:
        spec["initContainers"] = location.init_containers
    if claim_template:
        spec["resourceClaims"] = [{"name": GPU_CLAIM, "resourceClaimTemplateName": claim_template}]
    if kind.toleration:
        spec["tolerations"] = [kind.toleration]
    return spec


def model_label(track: Track) -> Optional[str]:
    """The version's model as a label value, as the hand-built path labels it."""
    if track.model:
        return track.model.key.replace("@", "-")
    return f"{track.registry.model}-{track.registry.selector}" if track.registry else None


def inference_service(
    w: ServingWorkload, track: Track, namespace: str, labels: dict[str, str], claim_template: Optional[str] = None, registry_image: Optional[str] = None
) -> dict[str, Any]:
    """metadata and spec of a version's InferenceService."""
    source = model_label(track)
    return {
        "metadata": {
            "name": isvc_name(w, track),
            "namespace": namespace,
            "labels": {**labels, "version": track.role, **({"ml-platform.io/model": source} if source else {})},
            "annotations": {
                **SKIP_AWAIT,
                "serving.kserve.io/deploymentMode": "Standard",
                # KServe's own HPA class takes Resource metrics only (v0.20.0 validateHPAMetrics); the platform's
                # autoscaler reads the adapter's per-pod metrics too.
                "serving.kserve.io/autoscalerClass": "external",
                "serving.kserve.io/model-format": w.format,
            },
        },
        "spec": {"predictor": predictor_spec(w, track, claim_template, registry_image)},
    }


def route_spec(w: ServingWorkload, parent_ref: dict[str, str], hosts: list[str]) -> dict[str, Any]:
    """The workload's path on the shared Gateway, split between its versions' predictors by weight."""
    backends = [{"name": predictor_service(w, t), "port": 80, "weight": t.weight} for t in w.tracks()]
    return weighted_route(w.name, w.path, parent_ref, hosts, backends, timeout="60s")


def hpa_spec(w: ServingWorkload, track: Track) -> dict[str, Any]:
    """On the predictor Deployment KServe creates: the adapter's per-pod metric if the workload names one, else CPU."""
    a = w.autoscaling
    if a.custom_metric:
        metric = {"type": "Pods", "pods": {"metric": {"name": a.custom_metric}, "target": {"type": "AverageValue", "averageValue": a.custom_metric_target}}}
    else:
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization}}}
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": predictor_service(w, track)},
        "minReplicas": track.min_replicas,
        "maxReplicas": track.max_replicas,
        "metrics": [metric],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }


def vpa_spec(w: ServingWorkload, track: Track) -> dict[str, Any]:
    """Recommendations (or updates, per `vpaUpdateMode`) for the model container; the sidecar's resources are Istio's.
    Limits follow requests in proportion (controlledValues' default), so memory limit = request holds."""
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": predictor_service(w, track)},
        "updatePolicy": {"updateMode": w.autoscaling.vpa_update_mode},
        "resourcePolicy": {
            "containerPolicies": [
                {"containerName": MODEL_CONTAINER, "controlledResources": ["cpu", "memory"]},
                {"containerName": "*", "mode": "Off"},
            ]
        },
    }


@dataclass(frozen=True)
class ServingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    teams: dict[str, TeamInfo]
    gateway: GatewayInfo
    gateway_api_crds: pulumi.Resource
    istiod: pulumi.Resource  # sidecar injector
    metrics_adapter: pulumi.Resource  # serves custom.metrics.k8s.io
    vertical_pod_autoscaler: Optional[pulumi.Resource]  # its CRD and controllers; None when the VPA is off
    model_stores: dict[str, pulumi.Resource]  # by team: the store's claim
    node_pools: dict[str, pulumi.Resource]  # by pool name; the controllers run on the cpu pool
    priority_classes: dict[str, pulumi.Resource]
    gpu_claims: Optional[pulumi.Resource]  # the NVIDIA DRA driver and its DeviceClass, when GPUs are claimed through DRA
    # By workload (team/name) and track: the lifecycle jobs that put its model into the store (components/workloads.py).
    model_jobs: dict[str, dict[str, list[pulumi.Resource]]]


@dataclass(frozen=True)
class ServedModel:
    """A serving workload on KServe, as the stack outputs show it."""

    name: str
    team: str
    namespace: str
    service_account: str
    url: pulumi.Output[str]
    # By track (stable, canary): the InferenceService, its in-cluster endpoint, its model and its share of the route.
    versions: dict[str, dict[str, Any]]


class Serving(pulumi.ComponentResource):
    served: dict[str, ServedModel]

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:serving:Serving", name, None, opts)
        sc = args.config.serving
        self._args = args
        capacity = args.node_pools["cpu"]

        def namespace(key: str, ns: str) -> k8s.core.v1.Namespace:
            # No sidecar injection: the API server calls the webhooks in these namespaces directly.
            return k8s.core.v1.Namespace(
                f"{name}-{key}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={"pod-security.kubernetes.io/enforce": "restricted", **PLATFORM_LABELS}),
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
            )

        release_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[capacity, *deps])  # noqa: E731
        cert_manager = helm.release(
            f"{name}-cert-manager",
            name="cert-manager",
            chart="cert-manager",
            repository=JETSTACK_CHARTS,
            version=sc.cert_manager_version,
            namespace=CERT_MANAGER_NAMESPACE,
            values=cert_manager_values(sc),
            opts=release_opts(namespace("cert-manager", CERT_MANAGER_NAMESPACE)),
        )
        kserve_ns = namespace("kserve", KSERVE_NAMESPACE)
        # CRDs only: they need the API server, not nodes.
        crds = helm.release(
            f"{name}-kserve-crd",
            name="kserve-crd",
            chart="kserve-crd",
            repository=KSERVE_CHARTS,
            version=sc.kserve_version,
            namespace=KSERVE_NAMESPACE,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[kserve_ns]),
        )
        # Its Certificate and Issuer need cert-manager's CRDs and webhook; its controller serves the InferenceService
        # and pod webhooks, which the release waits for (ready only once the webhook certificate is mounted).
        self.controller = helm.release(
            f"{name}-kserve",
            name="kserve",
            chart="kserve-resources",
            repository=KSERVE_CHARTS,
            version=sc.kserve_version,
            namespace=KSERVE_NAMESPACE,
            values=kserve_values(sc, args.gateway.parent_ref),
            opts=release_opts(kserve_ns, crds, cert_manager),
        )
        self.served = {}
        for w in args.config.workloads:
            if isinstance(w, ServingWorkload):
                self.served[f"{w.team}/{w.name}"] = self._workload(w, args.teams[w.team])
        self.register_outputs({"served": sorted(self.served)})

    def _opts(self, team: TeamInfo, *deps: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._args.provider, depends_on=[team.namespace_resource, *deps])

    def _workload(self, w: ServingWorkload, team: TeamInfo) -> ServedModel:
        args = self._args
        rn = f"{w.team}-{w.name}"
        labels = {"app": w.name, "app.kubernetes.io/name": w.name, **PLATFORM_LABELS, "ml-platform.io/team": w.team}

        def meta(name: str, extra: Optional[dict[str, str]] = None) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=team.namespace, labels={**labels, **(extra or {})})

        k8s.core.v1.ServiceAccount(f"{rn}-sa", metadata=meta(w.name), automount_service_account_token=False, opts=self._opts(team))
        store = [args.model_stores[w.team]] if w.models() else []
        # Pods start once injection, their priority class and pool, the team's quota and network policy are there.
        pod_deps = [args.istiod, args.priority_classes[SERVING_PRIORITY], args.node_pools[w.accelerator], *team.guardrails, *store]
        claim_template = None
        if args.gpu_claims is not None and w.accelerator == "nvidia":
            # Each predictor pod claims its GPUs from a template of the workload's own.
            claim_template = f"{w.name}-gpu"
            pod_deps.append(k8s.resource.v1.ResourceClaimTemplate(
                f"{rn}-gpu-claim", metadata=meta(claim_template), spec=gpu_claim_template_spec(w.accelerator_count), opts=self._opts(team, args.gpu_claims),
            ))
        versions: dict[str, dict[str, Any]] = {}
        for track in w.tracks():
            name = isvc_name(w, track)
            isvc = inference_service(w, track, team.namespace, labels, claim_template, args.config.registry.image)
            k8s.apiextensions.CustomResource(
                f"{rn}-{track.role}-isvc",
                api_version="serving.kserve.io/v1beta1",
                kind="InferenceService",
                metadata=isvc["metadata"],
                spec=isvc["spec"],
                # The controller's webhooks admit it (the release waited for them).
                opts=self._opts(team, self.controller, *pod_deps, *args.model_jobs.get(f"{w.team}/{w.name}", {}).get(track.role, [])),
            )
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{rn}-{track.role}-hpa",
                metadata=meta(name),
                spec=hpa_spec(w, track),
                # A custom metric is read through the adapter's APIService: without it the autoscaler never scales.
                opts=self._opts(team, *([args.metrics_adapter] if w.autoscaling.custom_metric else [])),
            )
            if args.vertical_pod_autoscaler:
                k8s.apiextensions.CustomResource(
                    f"{rn}-{track.role}-vpa",
                    api_version="autoscaling.k8s.io/v1",
                    kind="VerticalPodAutoscaler",
                    metadata=meta(name),
                    spec=vpa_spec(w, track),
                    opts=self._opts(team, args.vertical_pod_autoscaler),
                )
            k8s.policy.v1.PodDisruptionBudget(
                f"{rn}-{track.role}-pdb",
                metadata=meta(name),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels={ISVC_POD_LABEL: name})
                ),
                opts=self._opts(team),
            )
            versions[track.role] = {
                "inferenceService": name,
                "service": predictor_service(w, track),
                "endpoint": f"http://{predictor_service(w, track)}.{team.namespace}.svc.cluster.local",
                "model": track.model.key if track.model else None,
                "registry": registered(track.registry),
                "weight": track.weight,
            }
        k8s.apiextensions.CustomResource(
            f"{rn}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=meta(w.name),
            spec=route_spec(w, args.gateway.parent_ref, args.gateway.hosts),
            opts=self._opts(team, args.gateway_api_crds),
        )
        url = args.gateway.url.apply(lambda base: f"{base}{w.path}")
        return ServedModel(w.name, w.team, team.namespace, w.name, url, versions)
