"""The root of the settings: one model composing every capability's, the checks that span capabilities, and loading."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Iterable

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, model_validator

from infra.lib.accelerators import KINDS, family_of
from infra.config.accelerators import AcceleratorsConfig
from infra.config.alerting import AlertingConfig
from infra.config.autoscaling import AutoscalingConfig
from infra.config.base import ConfigError, Model, PROJECT, Tags
from infra.config.cluster import ClusterConfig
from infra.config.cost import BudgetConfig
from infra.config.gitops import GitOpsConfig
from infra.config.database import DatabaseConfig
from infra.config.images import ImagesConfig, cache_prefix
from infra.config.karpenter import KarpenterConfig, NodePools
from infra.config.kubeflow import KubeflowConfig
from infra.config.llm import LlmConfig, NEURON_CORES_PER_DEVICE
from infra.config.logging import LoggingConfig
from infra.config.mesh import MeshConfig
from infra.config.network import NetworkConfig
from infra.config.observability import ObservabilityConfig
from infra.config.registry import RegistryConfig
from infra.config.scheduling import SchedulingConfig
from infra.config.serving import ServingConfig
from infra.config.storage import StorageConfig
from infra.config.streaming import StreamingConfig
from infra.config.tenancy import TeamConfig
from infra.config.training import MAX_RESTARTS, TrainingConfig, runtimes_for, trains
from infra.config.workloads import ServingWorkload, TrainingWorkload, WORKLOAD_KINDS, Workload

# Keys whose values are secrets: never echoed in an error.
SECRET_KEYS = ("alertingSecrets", "gitopsRepoTokens")


def _amount(resource: str, amount: int) -> str:
    """infra/lib/headroom.py's units (millicores, MiB) as a person reads them."""
    return {"cpu": f"{amount / 1000:g} cores", "memory": f"{amount / 1024:g} GiB"}.get(resource, str(amount))


class PlatformConfig(Model):
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,15}$")]
    region: str
    tags: Tags
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig
    karpenter: KarpenterConfig = KarpenterConfig()
    node_pools: NodePools
    accelerators: AcceleratorsConfig = AcceleratorsConfig()
    storage: StorageConfig = StorageConfig()
    mesh: MeshConfig = MeshConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    alerting: AlertingConfig = AlertingConfig()
    logging: LoggingConfig = LoggingConfig()
    scheduling: SchedulingConfig = SchedulingConfig()
    streaming: StreamingConfig = StreamingConfig()
    serving: ServingConfig = ServingConfig()
    registry: RegistryConfig = RegistryConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()
    training: TrainingConfig = TrainingConfig()
    gitops: GitOpsConfig = GitOpsConfig()
    database: DatabaseConfig = DatabaseConfig()
    llm: LlmConfig = LlmConfig()
    budget: BudgetConfig
    images: ImagesConfig = ImagesConfig()
    # Secret: `pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <routing key or URL>`.
    alerting_secrets: dict[str, SecretStr] = {}
    # Secret: `pulumi config set --secret --path 'ml-platform:gitopsRepoTokens.<team>' <read-only token>`.
    gitops_repo_tokens: dict[str, SecretStr] = {}
    teams: list[TeamConfig] = []
    workloads: list[Workload] = []

    @model_validator(mode="after")
    def _cross_capability(self, info: ValidationInfo) -> "PlatformConfig":
        """Runs every check that spans capabilities and reports all their problems together, one per line."""
        checks = (
            self._dra_fits(),
            self._search_domain_fits_the_network(),
            self._cidrs_disjoint(),
            self._workloads_fit_the_platform(),
            self._quota_per_team(),
            self._llm_fits(),
            self._models(),
            self._registry_references(),
            self._vertical_autoscaling(),
            self._alerting(info),
            self._queue_headroom(),
            self._pipelines(),
            self._training(),
            self._gitops(info),
            self._static_within_limits(),
            self._cache_prefixes(),
            self._mig_capable(),
            self._database(),
            self._model_store_buckets(),
        )
        problems = [p for check in checks for p in check]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _dra_fits(self) -> Iterable[str]:
        if not self.accelerators.gpu_operator.dra.enabled:
            return
        if tuple(int(p) for p in self.cluster.kubernetes_version.split(".")) < (1, 34):
            yield f"accelerators.gpuOperator.dra needs Kubernetes 1.34 or newer (resource.k8s.io/v1); cluster.kubernetesVersion is {self.cluster.kubernetes_version}"
        for i, w in enumerate(self.workloads):
            # Karpenter 1.14 sizes nodes without DRA claims: a claim for several GPUs could land on a one-GPU node.
            if w.accelerator == "nvidia" and w.accelerator_count > 1:
                yield f"workloads[{i}].acceleratorCount {w.accelerator_count} with DRA: claim one GPU per pod (Karpenter does not size nodes for DRA claims yet)"

    def _mig_capable(self) -> Iterable[str]:
        from infra.config.accelerators import MIG_FAMILIES

        nvidia = self.node_pools.nvidia
        if self.accelerators.gpu_operator.sharing.strategy != "mig" or not (nvidia and nvidia.enabled):
            return
        if lacking := [t for t in nvidia.instance_types if family_of(t) not in MIG_FAMILIES]:
            yield (
                f"accelerators.gpuOperator.sharing.strategy mig: nodePools.nvidia.instanceTypes {lacking} have GPUs without MIG; "
                f"MIG families: {', '.join(sorted(MIG_FAMILIES))}"
            )

    def _cache_prefixes(self) -> Iterable[str]:
        for upstream in self.images.pull_through_cache:
            # ECR's limit on a pull-through cache rule's repository prefix (CreatePullThroughCacheRule: 2 to 30 characters).
            if len(prefix := cache_prefix(self.cluster_name, upstream)) > 30:
                yield f"images.pullThroughCache: the cache prefix {prefix!r} is over ECR's 30 characters; shorten the cluster name or drop {upstream!r}"

    def _static_within_limits(self) -> Iterable[str]:
        """A pool's static nodes, with its reservations, must fit in its limits: they count against them."""
        from policies.rules.cost import PriceError, held, price_table

        for name, pool in self.node_pools.enabled().items():
            static = getattr(pool, "static", None)
            if not static:
                continue
            try:
                table = price_table(self.region, self.budget.price_table_region)
                take = held(static.instance_type, static.replicas, table)
                for r in pool.capacity_reservations:
                    for key, amount in held(r.instance_type, r.instance_count, table).items():
                        take[key] += amount
            except PriceError:
                continue  # the cost check names the missing table or type
            resource = KINDS[name].resource
            limits = {"cpu": (pool.limits.cpu, "cpu"), "memory": (pool.limits.memory_gib, "memoryGib"), resource: (pool.limits.accelerators, "accelerators")}
            for key, (limit, setting) in limits.items():
                if take[key] > limit + 1e-9:
                    reserved = " with its capacityReservations" if pool.capacity_reservations else ""
                    yield (
                        f"nodePools.{name}.static.replicas {static.replicas} x {static.instance_type}{reserved} take {take[key]:g} "
                        f"{key}{' (GiB, net of VM overhead)' if key == 'memory' else ''}, beyond the pool's limits.{setting} {limit}: "
                        "static nodes count against the pool's limits; lower the replicas or raise the limit"
                    )

    def _search_domain_fits_the_network(self) -> Iterable[str]:
        search = self.logging.open_search
        if not search.enabled:
            return
        zones = len(self.network.availability_zones) if self.network.availability_zones else self.network.az_count
        if search.zone_count > zones:
            yield f"logging.openSearch.zoneCount {search.zone_count} exceeds the stack's {zones} availability zones"
        if self.environment == "prod" and search.zone_count == 1:
            yield "logging.openSearch.zoneCount 1 in prod: a zone outage would take the log search with it; use 2 or 3"
        if len(self.search_domain_name) > 28:
            yield f"logging.openSearch: the domain name {self.search_domain_name!r} is over OpenSearch's 28 characters; shorten the cluster name"

    @model_validator(mode="after")
    def _reservations_in_the_stacks_zones(self) -> "PlatformConfig":
        for name, pool in self.node_pools.enabled().items():
            for i, r in enumerate(getattr(pool, "capacity_reservations", [])):
                key = f"nodePools.{name}.capacityReservations[{i}].availabilityZone {r.availability_zone}"
                if r.availability_zone[:-1] != self.region:
                    raise ValueError(f"{key} is not in the stack's region {self.region}: a reservation serves only its own zone")
                if self.network.availability_zones and r.availability_zone not in self.network.availability_zones:
                    raise ValueError(f"{key} is not one of network.availabilityZones {list(self.network.availability_zones)}")
        return self

    @model_validator(mode="after")
    def _streaming(self) -> "PlatformConfig":
        streaming = self.streaming
        if streaming.teams and not streaming.enabled:
            raise ValueError("streaming.teams lists topics but streaming.enabled is false; enable it or drop the teams")
        teams = {t.name for t in self.teams}
        for team, spec in streaming.teams.items():
            if team not in teams:
                raise ValueError(f"streaming.teams.{team}: {team!r} is not one of the teams: {sorted(teams)}")
            for i, topic in enumerate(spec.topics):
                if len(f"{team}.{topic.name}") > 249:
                    raise ValueError(f"streaming.teams.{team}.topics[{i}].name: {team}.{topic.name} is over Kafka's 249 characters")
            if spec.data_prep is not None:
                claims = sorted(f"{w.name}-data" for w in self.workloads if w.team == team and getattr(w, "data", None))
                if spec.data_prep.output_claim not in claims:
                    raise ValueError(f"streaming.teams.{team}.dataPrep.outputClaim {spec.data_prep.output_claim!r} is no data claim "
                                     f"of the team's training workloads: {claims}")
        return self

    def _pipelines(self) -> Iterable[str]:
        pipelines = self.kubeflow.pipelines
        teams = sorted(t.name for t in self.teams)
        for team in pipelines.teams:
            if team not in teams:
                yield f"kubeflow.pipelines.teams.{team}: {team!r} is not one of the teams: {teams}"
        if self.kubeflow.pipelines_on and not self.database.enabled:
            yield "kubeflow.pipelines.enabled needs database.enabled: KFP keeps its runs and metadata on the platform's Aurora cluster"

    def _training(self) -> Iterable[str]:
        """Runtimes run on pools the stack has; distributed workloads and studies have what they run on."""
        training, pools = self.training, self.node_pools.enabled()
        if not training.enabled:
            if training.katib.studies:
                yield "training.katib.studies lists studies but training.enabled is false; enable it or drop the studies"
            for i, w in enumerate(self.workloads):
                if isinstance(w, TrainingWorkload) and w.workers > 1:
                    yield f"workloads[{i}] ({w.name}) runs {w.workers} workers, which run as a TrainJob: training.enabled must be true"
            return
        if not self.database.enabled:
            yield "training.enabled needs database.enabled: Katib keeps its experiments in the database `katib` on the platform's Aurora cluster; enable the database or set training.enabled: false"
        for i, r in enumerate(training.trainer.runtimes or []):
            key = f"training.trainer.runtimes[{i}]"
            if r.pool not in pools:
                yield f"{key}.pool {r.pool!r} has no enabled node pool (enabled: {sorted(pools)})"
                continue
            if r.pool == "neuron" and not trains(pools[r.pool]):
                yield f"{key}.pool neuron has no Trainium instance types (trn1, trn1n, trn2) in nodePools.neuron.instanceTypes: Inferentia does not train"
            efa = getattr(pools[r.pool], "efa", False)
            if efa and not r.efa_devices_per_node:
                yield f"{key}.efaDevicesPerNode is 0 but nodePools.{r.pool} has efa on: its collectives would leave EFA unused"
            if not efa and r.efa_devices_per_node:
                yield f"{key}.efaDevicesPerNode {r.efa_devices_per_node} but nodePools.{r.pool} has no efa"
        covered = {r.pool for r in runtimes_for(training, pools)}
        for i, w in enumerate(self.workloads):
            if not (isinstance(w, TrainingWorkload) and w.workers > 1):
                continue
            if w.accelerator in pools and w.accelerator not in covered:
                yield f"workloads[{i}] ({w.name}) runs {w.workers} workers on {w.accelerator} but training.trainer.runtimes has no runtime for that pool"
            # A TrainJob's pods take their resources from resourcesPerNode; its runtime patches cannot add a DRA claim.
            if w.accelerator == "nvidia" and self.accelerators.gpu_operator.dra.enabled:
                yield f"workloads[{i}] ({w.name}) runs {w.workers} workers on nvidia as a TrainJob, which requests nvidia.com/gpu: with accelerators.gpuOperator.dra the device plugin is off; run it single-worker or turn DRA off"
            if w.max_restarts != MAX_RESTARTS:
                yield f"workloads[{i}].maxRestarts {w.max_restarts}: a distributed run restarts as its ClusterTrainingRuntime says ({MAX_RESTARTS}), which a TrainJob cannot change"
        teams, seen = {t.name for t in self.teams}, set()
        for i, study in enumerate(training.katib.studies):
            key = f"training.katib.studies[{i}]"
            if study.team not in teams:
                yield f"{key}.team {study.team!r} is not one of the teams: {sorted(teams)}"
            if study.accelerator not in pools:
                yield f"{key}.accelerator {study.accelerator!r} has no enabled node pool"
            if (study.team, study.name) in seen:
                yield f"{key}.name {study.name!r} is used twice in team {study.team!r}"
            seen.add((study.team, study.name))
    def _database(self) -> Iterable[str]:
        db = self.database
        if not db.enabled:
            return
        zones = len(self.network.availability_zones) if self.network.availability_zones else self.network.az_count
        if db.instances > zones:
            yield f"database.instances {db.instances} exceeds the stack's {zones} availability zones (one instance per zone)"
        if self.environment == "prod":
            if not db.deletion_protection:
                yield "database.deletionProtection is false in prod: the ML layer's runs, metadata and registry live there; set it true"
            if db.skip_final_snapshot:
                yield "database.skipFinalSnapshot is true in prod: a destroy would lose the database for good; set it false"

    @property
    def search_domain_name(self) -> str:
        return f"{self.cluster_name}-logs"

    def _cidrs_disjoint(self) -> Iterable[str]:
        vpc = ipaddress.IPv4Network(self.network.cidr)
        svc = ipaddress.IPv4Network(self.cluster.service_ipv4_cidr)
        if vpc.overlaps(svc):
            yield f"cluster.serviceIpv4Cidr {svc} overlaps network.cidr {vpc}; pick a service range outside the VPC"

    def _workloads_fit_the_platform(self) -> Iterable[str]:
        teams = {t.name for t in self.teams}
        if len(teams) != len(self.teams):
            yield "teams has duplicate names"
        names, paths = set(), set()
        for i, w in enumerate(self.workloads):
            where = f"workloads[{i}]"
            if w.team not in teams:
                yield f"{where}.team {w.team!r} is not one of the teams: {sorted(teams)}"
            if (w.team, w.name) in names:
                yield f"{where}.name {w.name!r} is used twice in team {w.team!r}"
            names.add((w.team, w.name))
            if w.accelerator not in self.node_pools.enabled():
                yield f"{where}.accelerator {w.accelerator!r} has no enabled node pool"
            volumes = [v for v in (getattr(w, "data", None), getattr(w, "checkpoints", None)) if v]
            for v in volumes:
                if v.storage_class not in self.storage.classes:
                    yield f"{where} volume storageClass {v.storage_class!r} is not one of {sorted(self.storage.classes)}"
            if isinstance(w, ServingWorkload):
                if w.path in paths:
                    yield f"{where}.path {w.path!r} is already routed to another workload"
                paths.add(w.path)
        for i, w in enumerate(self.llm.workloads):
            if w.path in paths:
                yield f"llm.workloads[{i}].path {w.path!r} is already routed to another workload"
            paths.add(w.path)

    def _llm_fits(self) -> Iterable[str]:
        """Each LLM engine fits one node of its pool (tensor parallelism within a node), on a pool that exists, for a
        team with a model store."""
        from policies.rules.cost import PriceError, price_table

        teams = {t.name for t in self.teams}
        try:
            table = price_table(self.region, self.budget.price_table_region).instances
        except PriceError:
            return  # the cost ceiling reports the missing table, naming aws:region
        for i, w in enumerate(self.llm.workloads):
            where = f"llm.workloads[{i}]"
            if w.team not in teams:
                yield f"{where}.team {w.team!r} is not one of the teams: {sorted(teams)}"
            elif w.team not in self.storage.model_stores:
                yield f"{where}.model: team {w.team!r} has no model store to hold the weights; add storage.modelStores.{w.team}"
            if w.accelerator == "nvidia" and self.accelerators.gpu_operator.dra.enabled and w.parallelism.tensor > 1:
                # Karpenter 1.14 sizes nodes without DRA claims: a claim for several GPUs could land on a one-GPU node.
                yield f"{where}.parallelism.tensor {w.parallelism.tensor} with DRA: claim one GPU per engine pod (Karpenter does not size nodes for DRA claims yet)"
            pool = self.node_pools.enabled().get(w.accelerator)
            if pool is None:
                yield f"{where}.accelerator {w.accelerator!r} has no enabled node pool"
                continue
            # Accelerators per node of each instance type (the price table's, from Karpenter's instance-type reference).
            if w.accelerator == "nvidia":
                per_node = {t: table.get(t, {}).get("nvidiaGpus", 0) for t in pool.instance_types}
                unit = "GPUs"
            else:
                per_node = {t: table.get(t, {}).get("neuronDevices", 0) * NEURON_CORES_PER_DEVICE.get(family_of(t), 0) for t in pool.instance_types}
                unit = "NeuronCores (inf1 has no vLLM backend)"
            if max(per_node.values(), default=0) < w.parallelism.tensor:
                yield (
                    f"{where}.parallelism.tensor {w.parallelism.tensor} exceeds the {unit} of any one node of the {w.accelerator} pool "
                    f"({', '.join(f'{t}: {n}' for t, n in sorted(per_node.items()))}); lower it, add larger instance types to "
                    f"nodePools.{w.accelerator}.instanceTypes, or span nodes with parallelism.pipeline"
                )

    def _model_store_buckets(self) -> Iterable[str]:
        """Each S3 model store has a bucket of its own: a team's role reaches its whole bucket."""
        artifacts = self.kubeflow.pipelines.artifacts
        owners = {artifacts.bucket_name: "kubeflow.pipelines.artifacts"} if self.kubeflow.pipelines_on and artifacts else {}
        for team, store in self.storage.s3_stores().items():
            other = owners.setdefault(store.bucket_name, f"storage.modelStores.{team}")
            if other != f"storage.modelStores.{team}":
                yield f"storage.modelStores.{team}.s3.bucketName {store.bucket_name!r} is already the bucket of {other}; give each store its own bucket"

    def _quota_per_team(self) -> Iterable[str]:
        """A team's quota caps all its pods together: its workloads at their most pods must fit it side by side."""
        quota_keys = {"nvidia": ("nvidiaGpus", "nvidia_gpus"), "neuron": ("neuronCores", "neuron_cores")}
        for t, team in enumerate(self.teams):
            for accelerator, (key, field) in quota_keys.items():
                users = [(f"workloads[{i}]", w.name, w.max_pods, w.accelerator_count) for i, w in enumerate(self.workloads) if w.team == team.name and w.accelerator == accelerator]
                users += [
                    (f"llm.workloads[{i}]", w.name, w.max_pods, w.accelerators_per_pod())
                    for i, w in enumerate(self.llm.workloads) if w.team == team.name and w.accelerator == accelerator
                ]
                need = sum(pods * count for _, _, pods, count in users)
                quota = getattr(team.quota, field)
                if users and need > quota:
                    parts = " + ".join(f"{where} ({name}) {pods} pods x {count}" for where, name, pods, count in users)
                    yield (
                        f"teams[{t}].quota.{key} {quota} is below what team {team.name!r} needs at most: {parts} = {need} "
                        f"{accelerator} accelerators; raise the quota or lower the workloads' pods"
                    )

    def _models(self) -> Iterable[str]:
        """Every served model has a producer in its team (a training run or a pinned public model), each version
        names one content only, and Neuron targets have a compiler path."""
        teams = {t.name for t in self.teams}
        for team in self.storage.model_stores:
            if team not in teams:
                yield f"storage.modelStores.{team}: {team!r} is not one of the teams: {sorted(teams)}"
        produced: dict[tuple[str, str], str] = {}  # (team, model@version) -> what produces it
        for i, w in enumerate(self.workloads):
            outputs = [w.output] if isinstance(w, TrainingWorkload) and w.output else []
            externals = [m for m in (w.models() if isinstance(w, ServingWorkload) else []) if m.external]
            for ref, source in [(o, f"workloads[{i}] ({w.name})") for o in outputs] + [(m, f"{m.external.hub_id}@{m.external.revision}") for m in externals]:
                if w.team not in self.storage.model_stores:
                    yield f"workloads[{i}] uses model {ref.key} but team {w.team!r} has no model store; add storage.modelStores.{w.team}"
                    continue
                previous = produced.setdefault((w.team, ref.key), source)
                if previous != source:
                    yield (
                        f"workloads[{i}] model {ref.key} of team {w.team!r} already comes from {previous}, not {source}: "
                        "a version names one content forever, publish under a new version"
                    )
        for i, w in enumerate(self.workloads):
            if not isinstance(w, ServingWorkload):
                continue
            for ref in w.models():
                if w.team not in self.storage.model_stores:
                    yield f"workloads[{i}].model {ref.key}: team {w.team!r} has no model store; add storage.modelStores.{w.team}"
                elif (w.team, ref.key) not in produced:
                    known = sorted(k for t, k in produced if t == w.team)
                    yield (
                        f"workloads[{i}].model {ref.key} is produced by no training workload of team {w.team!r} and is not "
                        f"external (hubId and revision); models of the team: {known}"
                    )
            if w.neuron_target:
                pool = self.node_pools.neuron
                offered = sorted({family_of(t) for t in pool.instance_types}) if pool else []
                if w.neuron_target not in offered:
                    yield (
                        f"workloads[{i}].neuronTarget {w.neuron_target!r} has no compile path (nor nodes to run on): the neuron pool offers {offered}; "
                        f"add {w.neuron_target} instance types to nodePools.neuron.instanceTypes"
                    )

    def _registry_references(self) -> Iterable[str]:
        """A served registry version is fetched from the team's registry, which exists only with the registry on; the
        registry keeps its metadata on the platform database."""
        if self.registry.enabled:
            if not self.database.enabled:
                yield "registry.enabled needs database.enabled: the registry keeps its experiments and models on the platform database"
            return
        for i, w in enumerate(self.workloads):
            if not isinstance(w, ServingWorkload):
                continue
            for key, ref in (("registry", w.registry), ("canary.stable.registry", w.canary.stable.registry if w.canary else None)):
                if ref:
                    yield f"workloads[{i}].{key} {ref.uri}: registry.enabled is false, so team {w.team!r} has no registry to fetch it from"

    def _vertical_autoscaling(self) -> Iterable[str]:
        """A VPA that changes requests needs the components that do it, and never shares CPU with an HPA."""
        vpa = self.autoscaling.vertical_pod_autoscaler
        for i, w in enumerate(self.workloads):
            mode = w.autoscaling.vpa_update_mode if isinstance(w, ServingWorkload) else "Off"
            if mode == "Off":
                continue
            key = f"workloads[{i}].autoscaling.vpaUpdateMode {mode!r}"
            if not w.autoscaling.custom_metric:
                yield (
                    f"{key} with the workload's CPU-based autoscaler: CPU utilisation is relative to requests, so the VPA "
                    "changing them moves the HPA, whose new replicas move the VPA; scale on customMetric, or keep vpaUpdateMode Off"
                )
            needs = {
                "enabled": (vpa.enabled, "the recommender computes what to apply"),
                "admissionController": (vpa.admission_controller, "it sets the recommended requests on new pods"),
                "updater": (vpa.updater or mode == "Initial", f"it applies recommendations to running pods in {mode} mode"),
            }
            for name, (on, why) in needs.items():
                if not on:
                    yield f"{key} needs autoscaling.verticalPodAutoscaler.{name}: true ({why})"
            version = tuple(int(p) for p in self.cluster.kubernetes_version.split("."))
            if mode == "InPlaceOrRecreate" and version < (1, 33):
                yield f"{key} needs in-place pod resize, on by default from Kubernetes 1.33; the cluster runs {self.cluster.kubernetes_version}"

    def _queue_headroom(self) -> Iterable[str]:
        """Kueue admits training from what serving and `quota.outsideQueue` leave of each team's quota: each training
        run must fit in that share (borrowing is only ever what other teams leave idle), or it would never be admitted."""
        from infra.lib.headroom import compile_run, queue_quota, training_run

        keys = {"cpu": "cpu", "memory": "memoryGib", "nvidia.com/gpu": "nvidiaGpus", "aws.amazon.com/neuron": "neuronCores"}
        for i, team in enumerate(self.teams):
            own = queue_quota(self, team)
            for j, w in enumerate(self.workloads):
                if w.team != team.name or (w.kind == "serving" and not w.neuron_target):
                    continue
                # A serving workload's own queued run is the Job that compiles its model for Neuron.
                run, what = (training_run(w), f"workloads[{j}]") if w.kind == "training" else (compile_run(), f"workloads[{j}]'s Neuron compile Job")
                for resource, amount in run.items():
                    if amount > own[resource]:
                        yield (
                            f"{what} needs {_amount(resource, amount)} {resource} at once but the queue of team {team.name!r} has "
                            f"{_amount(resource, own[resource])} of it (teams[{i}].quota.{keys[resource]} less what its serving "
                            "workloads and quota.outsideQueue hold): Kueue would never admit it; raise the quota or lower the serving maxReplicas"
                        )

    def _gitops(self, info: ValidationInfo) -> Iterable[str]:
        """Each team's deliveries name a team and only its own namespaces; private repositories have a secret token."""
        teams = {t.name for t in self.teams}
        for team, spec in self.gitops.teams.items():
            if team not in teams:
                yield f"gitops.teams.{team}: {team!r} is not one of the teams: {sorted(teams)}"
                continue
            for i, ns in enumerate(spec.namespaces):
                # A team owns exactly the namespace named after it (components/tenancy.py).
                if ns != team:
                    yield f"gitops.teams.{team}.namespaces[{i}] {ns!r} is not a namespace of team {team!r} (its namespaces: [{team!r}])"
            if spec.private and team not in self.gitops_repo_tokens:
                yield (
                    f"gitops.teams.{team}.private needs a token: pulumi config set --secret --path "
                    f"'ml-platform:gitopsRepoTokens.{team}' <read-only token>"
                )
        if self.gitops_repo_tokens and f"{PROJECT}:gitopsRepoTokens" not in (info.context or {}).get("secret_keys", ()):
            yield "gitopsRepoTokens holds repository tokens but is not a secret in the stack file; set each with pulumi config set --secret"
        unknown = sorted(set(self.gitops_repo_tokens) - {t for t, s in self.gitops.teams.items() if s.private})
        if unknown:
            yield f"gitopsRepoTokens has tokens for {unknown}, which are not private repositories in gitops.teams"

    def _alerting(self, info: ValidationInfo) -> Iterable[str]:
        receivers = {r.name: r for r in self.alerting.receivers}
        if len(receivers) != len(self.alerting.receivers):
            yield "alerting.receivers has duplicate names"
        for key, name in self.alerting.receiver_references(self.teams).items():
            if name not in receivers:
                yield f"{key} {name!r} is not one of the receivers: {sorted(receivers)}"
        if self.alerting_secrets and f"{PROJECT}:alertingSecrets" not in (info.context or {}).get("secret_keys", ()):
            yield (
                "alertingSecrets holds routing keys and webhook URLs but is not a secret in the stack file; "
                "set each with pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <value>"
            )
        unknown = sorted(set(self.alerting_secrets) - set(receivers))
        if unknown:
            yield f"alertingSecrets has entries for unknown receivers {unknown}; receivers: {sorted(receivers)}"
        missing = sorted(set(receivers) - set(self.alerting_secrets))
        if missing:
            yield (
                f"alertingSecrets has no credential for receivers {missing}; set each with "
                "pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <routing key or https URL>"
            )
        for name, receiver in receivers.items():
            secret = self.alerting_secrets.get(name)
            if secret and receiver.kind != "pagerduty" and not secret.get_secret_value().startswith("https://"):
                yield f"alertingSecrets.{name} must be an https:// URL for a {receiver.kind} receiver (value not shown)"

    @property
    def cluster_name(self) -> str:
        return self.cluster.name or f"{PROJECT}-{self.environment}"

    def tags_for(self, name: str) -> dict[str, str]:
        """The tags every taggable AWS resource carries."""
        return {
            "Name": name,
            "environment": self.environment,
            "project": PROJECT,
            "owner": self.tags.owner,
            "cost-center": self.tags.cost_center,
            "managed-by": "pulumi",
            **self.tags.extra,
        }


# Why a required key has no default, said where it is missing (key path pattern -> hint).
MISSING_HINTS = {
    r"nodePools\.\w+\.limits": "; set cpu, memoryGib (and accelerators for GPU and Neuron pools): the most Karpenter may buy for the pool",
    r"nodePools(\.cpu)?": "; declare nodePools.cpu with its limits: the gateway and monitoring run on the cpu pool",
}


def _format_error(err: dict[str, Any]) -> str:
    # Tagged unions put the tag in the location (workloads.0.serving.image); the key path has none.
    loc = [str(p) for i, p in enumerate(err["loc"]) if not (p in WORKLOAD_KINDS and i and isinstance(err["loc"][i - 1], int))]
    # Model-level validators report at the model; the path then names the section.
    path = f"{PROJECT}:" + ".".join(loc[:1]) + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        # The value is not shown: a mistyped key may hold a secret.
        return f"{path}: unknown key; check the spelling against the configuration reference"
    if err["type"] == "missing":
        hint = next((h for pattern, h in MISSING_HINTS.items() if re.fullmatch(pattern, ".".join(loc))), "")
        return f"{path}: required key is missing{hint}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = json.dumps(err.get("ctx", {}).get("tag"))
        return f"{path}.kind: {tag} is not allowed: expected one of {', '.join(WORKLOAD_KINDS)}"
    shown = err.get("input")
    if loc and loc[0] in SECRET_KEYS:
        return f"{path}: {msg} (value not shown: it is a secret)"
    if isinstance(shown, dict):
        # A model-level check: each line of its message starts with the key it is about.
        return "\n  ".join(f"{path}{'.' if loc else ''}{line}" for line in msg.splitlines())
    return f"{path}: {json.dumps(shown, default=str)} is not allowed: {msg}"


def parse(raw: dict[str, Any], secret_keys: Iterable[str] = ()) -> PlatformConfig:
    """Validates a dict of `<section>: value` (already JSON-decoded); `secret_keys` are the config keys the
    stack holds encrypted (`ml-platform:alertingSecrets`, ...). Raises ConfigError."""
    try:
        return PlatformConfig.model_validate(raw, context={"secret_keys": set(secret_keys)})
    except ValidationError as exc:
        lines = [_format_error(e) for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def from_bag(bag: dict[str, Any], secret_keys: Iterable[str] = ()) -> PlatformConfig:
    """Validates a config bag as the engine hands it over (`<namespace>:<key>` -> string or JSON string)."""
    raw = {k.split(":", 1)[1]: _decode(v) for k, v in sorted(bag.items()) if k.startswith(f"{PROJECT}:")}
    region = _decode(bag["aws:region"]) if bag.get("aws:region") else None
    if not region:
        raise ConfigError("invalid configuration:\n  aws:region: required key is missing; set the AWS region of the stack")
    raw["region"] = region
    return parse(raw, secret_keys)


def load() -> PlatformConfig:
    """Reads the whole `ml-platform:` namespace the engine handed the program, plus `aws:region`."""
    from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env, is_config_secret

    bag = {**get_config_env(), **CONFIG.get()}
    return from_bag(bag, {k for k in bag if is_config_secret(k)} | set(get_config_secret_keys_env()))
