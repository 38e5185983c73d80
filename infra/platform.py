"""The platform as one dependency graph; reads top to bottom like the architecture picture."""
from __future__ import annotations

import datetime

import pulumi_aws as aws

from components.accelerators import Accelerators, AcceleratorsArgs
from components.alerting import Alerting, AlertingArgs
from components.autoscaling import Autoscaling, AutoscalingArgs
from components.budget import Budget, BudgetArgs
from components.cluster import Cluster, ClusterArgs
from components.database import Database, DatabaseArgs
from components.katib import Katib, KatibArgs, KatibUi
from components.encryption import Encryption, EncryptionArgs
from components.gitops import GitOps, GitOpsArgs
from components.images import ImageCache, ImageCacheArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.llm_serving import LlmServing, LlmServingArgs
from components.logging import Logging, LoggingArgs
from components.mesh import Mesh, MeshArgs
from components.model_store import ModelStores, ModelStoresArgs
from components.observability import Observability, ObservabilityArgs
from components.registry import Registry, RegistryArgs
from components.pipelines import Pipelines, PipelinesArgs
from components.storage import Storage, StorageArgs
from components.streaming import Streaming, StreamingArgs
from components.tenancy import Tenancy, TenancyArgs, team_group
from components.training import Training, TrainingArgs
from components.workloads import Workloads, WorkloadsArgs
from components.network import Network, NetworkArgs
from components.scheduling import Scheduling, SchedulingArgs
from components.secrets import SecretSync, SecretSyncArgs
from infra import cost, outputs
from infra.config import PlatformConfig
from infra.lib.interfaces import DatabaseInfo


def availability_zones(cfg: PlatformConfig) -> list[str]:
    if cfg.network.availability_zones:
        return list(cfg.network.availability_zones)
    offered = sorted(aws.get_availability_zones(state="available", filters=[
        aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"])
    ]).names)
    return offered[: cfg.network.az_count]


def build(cfg: PlatformConfig) -> None:
    # What this graph may cost at most, checked against the budget before anything is created.
    ceiling = cost.checked_ceiling(cfg, datetime.date.today())

    encryption = Encryption("encryption", EncryptionArgs(config=cfg))
    network = Network("network", NetworkArgs(config=cfg, availability_zones=availability_zones(cfg), logs_key_arn=encryption.logs_key_arn))

    cluster = Cluster(
        "cluster",
        ClusterArgs(
            config=cfg,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
            logs_key_arn=encryption.logs_key_arn,
        ),
    )

    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            config=cfg,
            cluster_name=cluster.name,
            cluster_security_group_id=cluster.security_group_id,
            vpc_id=network.vpc_id,
            provider=cluster.provider,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            depends_on=cluster.critical_addons,
        ),
    )

    images = ImageCache("images", ImageCacheArgs(config=cfg, node_role_name=karpenter.node_role_name))

    accelerators = Accelerators(
        "accelerators",
        AcceleratorsArgs(
            config=cfg,
            provider=cluster.provider,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            depends_on=cluster.critical_addons,
        ),
    )

    storage = Storage(
        "storage",
        StorageArgs(
            config=cfg,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_name=cluster.name,
            node_security_group_id=cluster.security_group_id,
            provider=cluster.provider,
            depends_on=cluster.critical_addons,
        ),
    )

    mesh = Mesh(
        "mesh",
        MeshArgs(
            config=cfg,
            vpc_id=network.vpc_id,
            vpc_cidr=cfg.network.cidr,
            cluster_name=cluster.name,
            provider=cluster.provider,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            depends_on=cluster.critical_addons,
            general_capacity=karpenter.node_pool_resources["cpu"],
        ),
    )

    observability = Observability(
        "observability",
        ObservabilityArgs(
            config=cfg,
            provider=cluster.provider,
            storage_class=cluster.default_storage_class,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            scrape_targets=[*karpenter.scrape_targets, *accelerators.scrape_targets, *mesh.scrape_targets],
            storage_class_resource=cluster.default_storage_class_resource,
            depends_on=cluster.critical_addons,
            general_capacity=karpenter.node_pool_resources["cpu"],
        ),
    )

    autoscaling = Autoscaling(
        "autoscaling",
        AutoscalingArgs(
            config=cfg,
            provider=cluster.provider,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            prometheus_url=observability.prometheus_url,
            prometheus=observability.release,
            depends_on=cluster.critical_addons,
        ),
    )

    tenancy = Tenancy("tenancy", TenancyArgs(config=cfg, cluster_name=cluster.name, provider=cluster.provider, depends_on=[mesh.istiod]))
    team_namespaces = {name: team.namespace_resource for name, team in tenancy.teams.items()}

    Alerting(
        "alerting",
        AlertingArgs(
            config=cfg,
            provider=cluster.provider,
            monitoring_namespace=observability.namespace,
            monitoring_release=observability.release,
            team_namespaces=team_namespaces,
        ),
    )

    logging = Logging(
        "logging",
        LoggingArgs(
            config=cfg,
            provider=cluster.provider,
            cluster_name=cluster.name,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            logs_key_arn=encryption.logs_key_arn,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            monitoring_release=observability.release,
            depends_on=cluster.critical_addons,
        ),
    )

    scheduling = Scheduling(
        "scheduling",
        SchedulingArgs(
            config=cfg,
            provider=cluster.provider,
            system_node_selector=cluster.system_node_selector,
            system_toleration=cluster.system_toleration,
            team_namespaces=team_namespaces,
            monitoring_release=observability.release,
            depends_on=cluster.critical_addons,
        ),
    )

    model_stores = ModelStores(
        "model-stores",
        ModelStoresArgs(
            config=cfg,
            provider=cluster.provider,
            cluster_name=cluster.name,
            file_system_id=storage.file_system_id,
            csi_driver=storage.csi_driver,
            team_namespaces=team_namespaces,
            depends_on=cluster.critical_addons,
            general_capacity=karpenter.node_pool_resources["cpu"],
        ),
    )

    streaming = None
    if cfg.streaming.enabled:
        # Needs the subnets and the node security group's id only: its creation runs beside the cluster's.
        streaming = Streaming(
            "streaming",
            StreamingArgs(
                config=cfg,
                vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids,
                node_security_group_id=cluster.security_group_id,
                logs_key_arn=encryption.logs_key_arn,
                cluster_name=cluster.name,
                provider=cluster.provider,
                team_namespaces=team_namespaces,
                vpc_cidr=cfg.network.cidr,
                general_capacity=karpenter.node_pool_resources["cpu"],
                metrics_adapter=autoscaling.metrics_adapter,
                monitoring_namespace=observability.namespace,
            ),
        )

    gitops = None
    if cfg.gitops.enabled:
        gitops = GitOps(
            "gitops",
            GitOpsArgs(
                config=cfg,
                cluster_name=cluster.name,
                provider=cluster.provider,
                team_namespaces=team_namespaces,
                monitoring_release=observability.release,
                depends_on=cluster.critical_addons,
                general_capacity=karpenter.node_pool_resources["cpu"],
            ),
        )

    database_info = None
    if cfg.database.enabled:
        # Needs the subnets and the node security group's id only: its creation runs beside the cluster's.
        database = Database(
            "database",
            DatabaseArgs(
                config=cfg,
                vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids,
                node_security_group_id=cluster.security_group_id,
                logs_key_arn=encryption.logs_key_arn,
            ),
        )
        secret_sync = SecretSync(
            "secret-sync",
            SecretSyncArgs(
                config=cfg,
                provider=cluster.provider,
                cluster_name=cluster.name,
                secret_arns=[database.master_secret_arn],
                key_arns=[database.key_arn],
                general_capacity=karpenter.node_pool_resources["cpu"],
                monitoring_release=observability.release,
            ),
        )
        database_info = DatabaseInfo(
            host=database.host,
            port=database.port,
            secret_store=secret_sync.store_name,
            master_secret_arn=database.master_secret_arn,
            ready=[secret_sync.store, *database.instances],
        )

    pipelines = None
    if cfg.kubeflow.pipelines_on:
        # The settings refuse Pipelines without the database (infra/config/root.py).
        assert database_info is not None
        pipelines = Pipelines(
            "pipelines",
            PipelinesArgs(
                config=cfg,
                provider=cluster.provider,
                cluster_name=cluster.name,
                team_namespaces=team_namespaces,
                team_groups={name: team_group(name) for name in tenancy.teams},
                gateway=mesh.gateway_info,
                general_capacity=karpenter.node_pool_resources["cpu"],
                istiod=mesh.istiod,
                gateway_api_crds=mesh.gateway_api_crds,
                monitoring_release=observability.release,
                database=database_info,
                model_store_publish_policies=model_stores.publish_policies,
            ),
        )

    registry = None
    if cfg.registry.enabled:
        registry = Registry(
            "registry",
            RegistryArgs(
                config=cfg,
                provider=cluster.provider,
                cluster_name=cluster.name,
                team_namespaces=team_namespaces,
                istiod=mesh.istiod,
                general_capacity=karpenter.node_pool_resources["cpu"],
                database=database_info,
            ),
        )

    workloads = Workloads(
        "workloads",
        WorkloadsArgs(
            config=cfg,
            provider=cluster.provider,
            teams=tenancy.teams,
            gateway=mesh.gateway_info,
            istiod=mesh.istiod,
            gateway_api_crds=mesh.gateway_api_crds,
            metrics_adapter=autoscaling.metrics_adapter,
            vertical_pod_autoscaler=autoscaling.vertical_pod_autoscaler,
            storage_classes=storage.class_resources,
            model_stores=model_stores.claims,
            node_pools=karpenter.node_pool_resources,
            priority_classes=tenancy.priority_classes,
            gpu_claims=accelerators.gpu_claims,
            queues=scheduling.queues,
        ),
    )

    if cfg.training.enabled:
        Training(
            "training",
            TrainingArgs(
                config=cfg,
                provider=cluster.provider,
                teams=tenancy.teams,
                queues=scheduling.queues,
                jobset=scheduling.jobset,
                model_stores=model_stores.claims,
                node_pools=karpenter.node_pool_resources,
                priority_classes=tenancy.priority_classes,
                distributed=workloads.distributed,
                monitoring_release=observability.release,
                general_capacity=karpenter.node_pool_resources["cpu"],
            ),
        )
        Katib(
            "katib",
            KatibArgs(
                config=cfg,
                provider=cluster.provider,
                database=database_info,
                teams=tenancy.teams,
                queues=scheduling.queues,
                node_pools=karpenter.node_pool_resources,
                priority_classes=tenancy.priority_classes,
                monitoring_release=observability.release,
                general_capacity=karpenter.node_pool_resources["cpu"],
                shared_namespace=pipelines.namespace_resource if pipelines else None,
                ui=KatibUi(
                    gateway=mesh.gateway_info,
                    token_check=pipelines.token_check,
                    istiod=mesh.istiod,
                    gateway_api_crds=mesh.gateway_api_crds,
                    users={team: spec.users for team, spec in cfg.kubeflow.pipelines.teams.items() if spec.users},
                ) if pipelines and pipelines.token_check else None,
            ),
        )
    llm = LlmServing(
        "llm",
        LlmServingArgs(
            config=cfg,
            provider=cluster.provider,
            teams=tenancy.teams,
            gateway=mesh.gateway_info,
            istiod=mesh.istiod,
            gateway_api_crds=mesh.gateway_api_crds,
            inference_pool_crds=mesh.inference_pool_crds,
            metrics_adapter=autoscaling.metrics_adapter,
            monitoring_release=observability.release,
            model_stores=model_stores.claims,
            node_pools=karpenter.node_pool_resources,
            priority_classes=tenancy.priority_classes,
            queues=scheduling.queues,
            gpu_claims=accelerators.gpu_claims,
        ),
    )

    serving = None
    if cfg.serving.kserve:
        # Loaded only by the stacks that serve through KServe.
        from components.serving import Serving, ServingArgs

        serving = Serving(
            "serving",
            ServingArgs(
                config=cfg,
                provider=cluster.provider,
                teams=tenancy.teams,
                gateway=mesh.gateway_info,
                gateway_api_crds=mesh.gateway_api_crds,
                istiod=mesh.istiod,
                metrics_adapter=autoscaling.metrics_adapter,
                vertical_pod_autoscaler=autoscaling.vertical_pod_autoscaler,
                model_stores=model_stores.claims,
                node_pools=karpenter.node_pool_resources,
                priority_classes=tenancy.priority_classes,
                gpu_claims=accelerators.gpu_claims,
                model_jobs=workloads.model_jobs,
            ),
        )

    # The cost guard: the ceiling the policy pack holds this graph to, and alerts on real spend.
    Budget("budget", BudgetArgs(config=cfg))

    outputs.export(
        cfg,
        network=network,
        cluster=cluster,
        karpenter=karpenter,
        storage=storage,
        mesh=mesh,
        observability=observability,
        logging=logging,
        tenancy=tenancy,
        workloads=workloads,
        serving=serving,
        registry=registry,
        llm=llm,
        gitops=gitops,
        images=images,
        ceiling=ceiling,
        model_stores=model_stores,
        pipelines=pipelines,
        streaming=streaming,
    )
