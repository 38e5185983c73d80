"""IAM policy documents as JSON strings, shared by every component."""
from __future__ import annotations

import json
from typing import Any


def policy_document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def service_trust_policy(service: str, actions: tuple[str, ...] = ("sts:AssumeRole",)) -> str:
    return policy_document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}])


# EKS Pod Identity assumes roles with session tags.
POD_IDENTITY_TRUST = service_trust_policy("pods.eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession"))
