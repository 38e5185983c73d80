"""Names the whole platform agrees on: labels, namespaces, priority classes and mount points that several components use."""
from __future__ import annotations

TEAM_LABEL = "ml-platform.io/team"
MONITORING_NAMESPACE = "monitoring"
# Grafana's dashboard sidecar loads every ConfigMap of the monitoring namespace that carries it.
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
SERVING_PRIORITY = "ml-serving"
TRAINING_PRIORITY = "ml-training"
GATEWAY_NAMESPACE = "istio-ingress"
ISTIO_NAMESPACE = "istio-system"
MODEL_STORE_CLAIM = "model-store"
MODEL_STORE_PATH = "/models"
# Namespaces whose HTTPRoutes the platform Gateway accepts: the teams' and the platform's own UIs.
ROUTES_LABEL = "ml-platform.io/gateway-routes"
# The label Grafana's dashboard sidecar looks for on ConfigMaps (kube-prometheus-stack values, components/observability.py).
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
# Namespaces whose ExternalSecrets may read the platform database's credentials through the ClusterSecretStore.
DATABASE_CLIENT_LABEL = "ml-platform.io/database-client"
DATABASE_SECRET_STORE = "aws-secrets-manager"
# The model registry: one MLflow server per team in a platform namespace, reached at a stable in-cluster address.
REGISTRY_NAMESPACE = "mlflow"
REGISTRY_PORT = 5000


def registry_service(team: str) -> str:
    return f"mlflow-{team}"


def registry_url(team: str) -> str:
    """The team's MLflow tracking and registry URI (MLFLOW_TRACKING_URI) from inside the cluster."""
    return f"http://{registry_service(team)}.{REGISTRY_NAMESPACE}.svc.cluster.local:{REGISTRY_PORT}"
# On each object the program creates from a vendored kustomize render: the upstream project it comes from.
UPSTREAM_LABEL = "ml-platform.io/upstream"
# A team's model store: the claim every pod reads it through, and on an S3 store the claim its publishers write
# through (infra/lib/model_store.py).
MODEL_STORE_PUBLISH_CLAIM = "model-store-publish"
# The user every platform-built pod runs as (their pod security contexts); an S3 store's files are presented as theirs.
WORKLOAD_UID = 10001


def team_service_account(team: str) -> str:
    """The service account of a team's platform Jobs (the model lifecycle), created with its namespace."""
    return f"{team}-workloads"
