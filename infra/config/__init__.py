"""Typed platform configuration, validated once before any resource is registered.

Stack files hold `ml-platform:<section>` keys in camelCase; `load()` (infra.config.root) reads every key of the
project namespace (unknown keys included) and returns one frozen `PlatformConfig`.

One module per capability, mirroring components/; this package re-exports their names.
"""
from infra.config.base import AddonVersion, Cidr, ConfigError, CpuQuantity, DnsLabel, Duration, HelmChart, IamRoleArn, ImageRef, LOG_RETENTION_DAYS, Model, PROJECT, Quantity, RetentionDays, Tags  # noqa: F401
from infra.config.network import FlowLogs, NetworkConfig, plan_subnets  # noqa: F401
from infra.config.cluster import AddonVersions, ClusterAccess, ClusterConfig, EndpointAccess, NODE_AMI_TYPES, SUPPORTED_KUBERNETES_VERSIONS, SystemNodeGroup  # noqa: F401
from infra.config.karpenter import ACCELERATOR_DISRUPTION, AcceleratorPool, AmiAlias, CapacityReservation, CapacityType, CpuPool, Disruption, DisruptionBudget, InstanceType, KarpenterConfig, NeuronPool, NodePoolBase, NodePools, NvidiaPool, PoolLimits, StaticCapacity  # noqa: F401
from infra.config.accelerators import AcceleratorsConfig, GpuOperator, GpuSharing, NvidiaDra  # noqa: F401
from infra.config.storage import EfsStorageClass, ModelStore, S3ModelStore, StorageConfig  # noqa: F401
from infra.config.mesh import GatewayConfig, MeshConfig  # noqa: F401
from infra.config.alerting import AlertReceiver, AlertRoutes, AlertingConfig, Watchdog  # noqa: F401
from infra.config.logging import LoggingConfig, OpenSearchConfig  # noqa: F401
from infra.config.scheduling import SchedulingConfig  # noqa: F401
from infra.config.cost import BudgetConfig  # noqa: F401
from infra.config.images import ImagesConfig, UPSTREAMS, cache_prefix  # noqa: F401
from infra.config.observability import ObservabilityConfig  # noqa: F401
from infra.config.autoscaling import AutoscalingConfig, PrometheusAdapterConfig, VerticalPodAutoscalerConfig  # noqa: F401
from infra.config.tenancy import ContainerDefaults, OutsideQueue, TeamConfig, TeamQuota  # noqa: F401
from infra.config.workloads import Accelerator, Autoscaling, Canary, ExternalModel, ModelOutput, ModelRef, ModelVersion, NeuronTarget, Probe, Resources, ServingWorkload, StableTrack, Track, TrainingWorkload, VolumeConfig, VpaUpdateMode, WORKLOAD_KINDS, Workload, WorkloadBase, WorkloadName, custom_metrics  # noqa: F401
from infra.config.serving import RUNTIMES, ModelFormat, Runtime, ServingConfig, model_format_for  # noqa: F401
from infra.config.database import DatabaseConfig, SecretSync  # noqa: F401
from infra.config.streaming import KafkaName, ProvisionedMsk, StreamingConfig, TeamStreaming, Topic  # noqa: F401
from infra.config.registry import MLFLOW_IMAGE, ModelAlias, RegisteredModelName, RegistryConfig, RegistryRef, RegistryResources  # noqa: F401
from infra.config.training import Algorithm, KatibConfig, Objective, Parameter, Study, TrainerConfig, TrainingConfig, TrainingRuntime, runtimes_for  # noqa: F401
from infra.config.gitops import ArgoCdCapability, ArgoCdChart, GitOpsConfig, TeamDelivery  # noqa: F401
from infra.config.llm import EndpointPicker, InferencePoolConfig, LlmAutoscaling, LlmCanary, LlmConfig, LlmModel, LlmWorkload, Parallelism  # noqa: F401
from infra.config.root import MISSING_HINTS, PlatformConfig, SECRET_KEYS, from_bag, load, parse  # noqa: F401
from infra.config.pins import PINS  # noqa: F401
