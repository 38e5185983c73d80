"""Istio at the platform Gateway for the Kubeflow UIs: a token from the configured issuer is required on a UI's
paths, and its user claim becomes the header the UI authorizes by (Istio overwrites any header the client sent)."""
from __future__ import annotations

from typing import Any

from infra.config.kubeflow import PipelinesUi
from infra.lib.conventions import GATEWAY_NAMESPACE

# The header Kubeflow's UIs read the caller's identity from (KFP's and Katib's default).
USER_HEADER = "kubeflow-userid"


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": labels}


def token_check(name: str, ui: PipelinesUi, gateway_selector: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    """The RequestAuthentication: tokens of the issuer are validated, and the user claim written to USER_HEADER."""
    rule: dict[str, Any] = {"issuer": ui.issuer, "audiences": list(ui.audiences), "forwardOriginalToken": False,
                            "outputClaimToHeaders": [{"header": USER_HEADER, "claim": ui.user_claim}]}
    if ui.jwks_uri:
        rule["jwksUri"] = ui.jwks_uri
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": _meta(name, labels),
            "spec": {"selector": {"matchLabels": gateway_selector}, "jwtRules": [rule]}}


def require_token(name: str, path: str, ui: PipelinesUi, gateway_selector: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    """The AuthorizationPolicy that refuses a UI's paths without a valid token carrying the user claim."""
    paths = [path, f"{path}/*"]
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": _meta(name, labels),
            "spec": {"selector": {"matchLabels": gateway_selector}, "action": "DENY", "rules": [
                {"from": [{"source": {"notRequestPrincipals": ["*"]}}], "to": [{"operation": {"paths": paths}}]},
                # A token without the user claim would leave a client-sent header in place.
                {"to": [{"operation": {"paths": paths}}], "when": [{"key": f"request.auth.claims[{ui.user_claim}]", "notValues": ["*"]}]},
            ]}}


def ui_route(service: str, namespace: str, path: str, parent_ref: dict[str, str], labels: dict[str, str], timeout: str = "60s") -> dict[str, Any]:
    """A Kubeflow UI on the Gateway: its path, unrewritten (the UIs serve under it), to its Service's port 80."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": service, "namespace": namespace, "labels": labels},
        "spec": {
            "parentRefs": [parent_ref],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [{"name": service, "port": 80}],
                       "timeouts": {"request": timeout}}],
        },
    }
