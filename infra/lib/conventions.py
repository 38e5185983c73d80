"""Names the whole platform agrees on: labels, namespaces, priority classes and mount points that several components use."""
from __future__ import annotations

TEAM_LABEL = "ml-platform.io/team"
MONITORING_NAMESPACE = "monitoring"
SERVING_PRIORITY = "ml-serving"
TRAINING_PRIORITY = "ml-training"
GATEWAY_NAMESPACE = "istio-ingress"
ISTIO_NAMESPACE = "istio-system"
MODEL_STORE_CLAIM = "model-store"
MODEL_STORE_PATH = "/models"
# The label Grafana's dashboard sidecar looks for on ConfigMaps (kube-prometheus-stack values, components/observability.py).
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
# Namespaces whose ExternalSecrets may read the platform database's credentials through the ClusterSecretStore.
DATABASE_CLIENT_LABEL = "ml-platform.io/database-client"
DATABASE_SECRET_STORE = "aws-secrets-manager"
