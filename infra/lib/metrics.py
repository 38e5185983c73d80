"""The per-pod custom metrics the platform's Prometheus adapter serves: settings validate against them, components serve them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Prometheus scrapes every 30 s: a rate needs at least four samples.
RATE_WINDOW = "2m"

# vLLM's series (vllm/v1/metrics/loggers.py at the pinned image; the endpoint picker's defaults at the pinned
# Inference Extension read the same two gauges). They reach Prometheus once, through the LLM ServiceMonitor
# (components/llm_serving.py); the mesh's merged-metrics PodMonitor drops them.
VLLM_SERIES = "vllm:.*"
VLLM_QUEUE = "vllm:num_requests_waiting"
VLLM_KV_CACHE = "vllm:kv_cache_usage_perc"


def _vllm_gauge(series: str, name: str, aggregate: str) -> ServedMetric:
    # The ServiceMonitor's target labels name the engine pod (namespace, pod); multi-engine pods sum their engines.
    return ServedMetric(
        rule={
            "seriesQuery": f'{{__name__="{series}",namespace!="",pod!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": f"^{series}$", "as": name},
            "metricsQuery": f"{aggregate} by (<<.GroupBy>>) (<<.Series>>{{<<.LabelMatchers>>}})",
        },
        accelerators=("nvidia", "neuron"),
        engine="vllm",
    )


@dataclass(frozen=True)
class ServedMetric:
    """A per-pod metric on custom.metrics.k8s.io: the adapter rule that serves it, and the pools whose pods carry it."""

    rule: dict[str, Any]
    accelerators: tuple[str, ...]
    # Only pods of this engine expose it (the LLM serving path's vLLM pods); None: every pod of the pools.
    engine: str | None = None


# Every custom metric the platform serves, by its name in the HPA: the adapter's rules.custom is built from this, and
# `autoscaling.customMetric` must name one of these.
#
# NeuronCore utilisation is not here: neuron-monitor labels `neuroncore_utilization_ratio` with the instance and core
# (instance_id, neuroncore, runtime_tag), never the pod, and its PodMonitor adds the exporter's own namespace/pod.
# Nothing in the series says which pod holds which NeuronCore, so a per-pod figure would be invented; Neuron workloads
# scale on requests_per_second, and the Neuron dashboard shows the utilisation per node and core.
CUSTOM_METRICS: dict[str, ServedMetric] = {
    # Requests each pod's sidecar received (reporter=destination). Istio's metrics carry no namespace/pod labels, so
    # these are the scrape target's: the serving pod, read once (the envoy-sidecars PodMonitor, at the merged port).
    "requests_per_second": ServedMetric(
        rule={
            "seriesQuery": 'istio_requests_total{reporter="destination",namespace!="",pod!=""}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": "^istio_requests_total$", "as": "requests_per_second"},
            "metricsQuery": f'sum by (<<.GroupBy>>) (rate(<<.Series>>{{<<.LabelMatchers>>,reporter="destination"}}[{RATE_WINDOW}]))',
        },
        accelerators=("cpu", "nvidia", "neuron"),
    ),
    # Busy percentage (0-100) of the GPUs DCGM attributes to a pod. The dcgm-exporter ServiceMonitor does not honour
    # the exporter's labels, so Prometheus keeps the pod's as exported_namespace/exported_pod (namespace/pod are the
    # exporter's own). Under time slicing it is the shared GPU's utilisation, not the pod's share.
    "gpu_utilization": ServedMetric(
        rule={
            "seriesQuery": 'DCGM_FI_DEV_GPU_UTIL{exported_namespace!="",exported_pod!=""}',
            "resources": {"overrides": {"exported_namespace": {"resource": "namespace"}, "exported_pod": {"resource": "pod"}}},
            "name": {"matches": "^DCGM_FI_DEV_GPU_UTIL$", "as": "gpu_utilization"},
            "metricsQuery": "avg by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",
        },
        accelerators=("nvidia",),
    ),
    # Requests waiting for a slot in the engine's batch: the queue an LLM replica can no longer absorb.
    "vllm_queue_depth": _vllm_gauge(VLLM_QUEUE, "vllm_queue_depth", "sum"),
    # KV-cache blocks in use (0-1): near 1 the engine preempts running requests.
    "vllm_kv_cache_usage": _vllm_gauge(VLLM_KV_CACHE, "vllm_kv_cache_usage", "max"),
}

# Served for the platform's own consumers (components/streaming.py), not offered to serving workloads'
# `autoscaling.customMetric`: a model server does not consume Kafka.
STREAMING_METRICS: dict[str, ServedMetric] = {
    # Records a Kafka consumer pod has not read yet, summed over the partitions it holds (the data-prep consumer,
    # examples/data-prep, exports it per partition). namespace/pod are the scrape target's: the sidecar's merged
    # endpoint of the consuming pod, as for requests_per_second.
    "kafka_consumer_lag": ServedMetric(
        rule={
            "seriesQuery": 'kafka_consumer_lag{namespace!="",pod!=""}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": "^kafka_consumer_lag$", "as": "kafka_consumer_lag"},
            "metricsQuery": "sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",
        },
        accelerators=("cpu",),
    ),
}

# Every metric the adapter's rules serve.
ADAPTER_METRICS: dict[str, ServedMetric] = {**CUSTOM_METRICS, **STREAMING_METRICS}
