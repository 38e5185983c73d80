"""What a team may manage in its own namespace: the RBAC rules of its Role (components/tenancy.py) and the kinds
those rules let it create, which is what Argo CD may deliver for it (components/gitops.py)."""
from __future__ import annotations

ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

# Nothing cluster-wide.
TEAM_RULES = [
    (["", "apps", "batch", "autoscaling", "policy"], [
        "pods", "pods/log", "pods/portforward", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims",
        "serviceaccounts", "events", "deployments", "replicasets", "statefulsets", "jobs", "cronjobs",
        "horizontalpodautoscalers", "poddisruptionbudgets",
    ], ALL_VERBS),
    (["gateway.networking.k8s.io"], ["httproutes"], ALL_VERBS),
    (["monitoring.coreos.com"], ["servicemonitors", "podmonitors", "prometheusrules"], ALL_VERBS),
    # Distributed runs (TrainJobs, and the JobSets they run as) and GPU claims (with DRA) of their own.
    (["trainer.kubeflow.org"], ["trainjobs"], ALL_VERBS),
    # Hyperparameter studies of their own (Katib), and what Katib makes of them, readable.
    (["kubeflow.org"], ["experiments"], ALL_VERBS),
    (["kubeflow.org"], ["trials", "suggestions"], ["get", "list", "watch"]),
    (["jobset.x-k8s.io"], ["jobsets"], ALL_VERBS),
    (["resource.k8s.io"], ["resourceclaimtemplates", "resourceclaims"], ALL_VERBS),
    # What the platform decides for them, readable: quotas, queues and admitted workloads, VPA recommendations.
    ([""], ["resourcequotas", "limitranges"], ["get", "list", "watch"]),
    (["kueue.x-k8s.io"], ["localqueues", "workloads"], ["get", "list", "watch"]),
    (["autoscaling.k8s.io"], ["verticalpodautoscalers"], ["get", "list", "watch"]),
    # Their models' InferenceServices (and why one is not ready); the platform declares them from the team's config.
    (["serving.kserve.io"], ["inferenceservices"], ["get", "list", "watch"]),
    # Their LLM workloads as the platform declares them (docs/app-teams/llm-serving.md).
    (["inference.networking.k8s.io"], ["inferencepools"], ["get", "list", "watch"]),
    (["leaderworkerset.x-k8s.io"], ["leaderworkersets"], ["get", "list", "watch"]),
]

# Each resource a rule names, in its own API group, as a kind. Subresources and Events are not objects a team's
# repository declares.
KINDS = {
    ("", "pods"): "Pod",
    ("", "services"): "Service",
    ("", "endpoints"): "Endpoints",
    ("", "configmaps"): "ConfigMap",
    ("", "secrets"): "Secret",
    ("", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("", "serviceaccounts"): "ServiceAccount",
    ("apps", "deployments"): "Deployment",
    ("apps", "replicasets"): "ReplicaSet",
    ("apps", "statefulsets"): "StatefulSet",
    ("batch", "jobs"): "Job",
    ("batch", "cronjobs"): "CronJob",
    ("autoscaling", "horizontalpodautoscalers"): "HorizontalPodAutoscaler",
    ("policy", "poddisruptionbudgets"): "PodDisruptionBudget",
    ("gateway.networking.k8s.io", "httproutes"): "HTTPRoute",
    ("monitoring.coreos.com", "servicemonitors"): "ServiceMonitor",
    ("monitoring.coreos.com", "podmonitors"): "PodMonitor",
    ("monitoring.coreos.com", "prometheusrules"): "PrometheusRule",
    ("trainer.kubeflow.org", "trainjobs"): "TrainJob",
    ("kubeflow.org", "experiments"): "Experiment",
    ("jobset.x-k8s.io", "jobsets"): "JobSet",
    ("resource.k8s.io", "resourceclaimtemplates"): "ResourceClaimTemplate",
    ("resource.k8s.io", "resourceclaims"): "ResourceClaim",
}


def creatable_kinds() -> list[tuple[str, str]]:
    """(group, kind) of every object the team's Role lets it create, sorted."""
    found = set()
    for groups, resources, verbs in TEAM_RULES:
        if "create" not in verbs:
            continue
        for group in groups:
            for resource in resources:
                if (group, resource) in KINDS:
                    found.add((group, KINDS[(group, resource)]))
    return sorted(found)
