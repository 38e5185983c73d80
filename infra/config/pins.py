"""Every pinned upstream version in one place: config defaults name these, and schemas/SOURCES.yaml vendors
each project's CRDs and chart values at exactly these versions (a test fails when the two drift apart)."""
from __future__ import annotations

PINS: dict[str, str] = {
    # Compute
    "karpenter": "1.14.1",
    "gpu-operator": "v26.7.0",
    "neuron-helm-chart": "1.9.0",
    # eks-charts versions this chart in its Chart.yaml only (no tag): schemas/SOURCES.yaml names the commit.
    "aws-efa-k8s-device-plugin": "v0.5.30",
    "metrics-server": "3.13.1",
    # Mesh and traffic
    "istio": "1.30.3",
    "gateway-api": "v1.5.1",  # the release Istio 1.30 is built and tested against (its go.mod)
    "aws-load-balancer-controller": "3.5.0",
    # The Inference Extension release Istio 1.30.3 is built against (its go.mod) and tests with (its integration CRDs).
    "gateway-api-inference-extension": "v1.4.0",
    # Observability
    "kube-prometheus-stack": "88.5.3",
    "fluent-bit": "0.58.1",
    "prometheus-adapter": "5.3.0",
    # Scheduling and autoscaling
    "kueue": "0.19.2",
    "jobset": "0.12.0",
    "volcano": "1.15.1",
    "vertical-pod-autoscaler": "0.11.0",
    "dra-driver-nvidia-gpu": "0.4.0",
    # ML layer: the newest releases (kubeflow/pipelines, kubeflow/trainer and kubeflow/katib tags) when pinned.
    "kubeflow-pipelines": "2.17.0",
    "kubeflow-trainer": "2.3.0",
    "katib": "0.19.0",
    # Serving
    "kserve": "v0.20.0",
    # KServe's webhook certificate and its CA injection (KServe's chart renders a cert-manager Certificate).
    "cert-manager": "v1.21.1",
    # Delivery for app teams: the argo-cd chart (Argo CD v3.4.4, its appVersion; schemas/SOURCES.yaml vendors those CRDs).
    "argo-cd": "10.1.1",
    # Secrets: Secrets Manager -> Kubernetes Secrets
    "external-secrets": "2.9.0",
    # LLM serving: LeaderWorkerSet, a replica of several pods across nodes.
    "lws": "0.10.0",
    # Prefill/decode disaggregation: llm-d's endpoint picker and routing sidecar, one release (llm-d/llm-d-router tag).
    "llm-d-router": "0.10.0",
}
