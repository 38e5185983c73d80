"""Every manifest of every stack validates: custom resources against the upstream CRDs, the rest against Kubernetes."""
from __future__ import annotations

import jsonschema
import pytest

from tests.schemas import is_custom, validate


def test_every_manifest_validates(stack):
    assert stack.result.manifests
    for fname, manifest in stack.result.manifests.items():
        try:
            validate(manifest)
        except Exception as exc:  # noqa: BLE001 - report which manifest failed
            pytest.fail(f"{fname}: {exc}")


def test_custom_resources_are_recognised_as_such(stack):
    kinds = {m["kind"] for m in stack.result.manifests.values() if is_custom(m)}
    assert {"NodePool", "EC2NodeClass"} <= kinds


def test_validation_rejects_a_broken_node_pool(stack):
    pool = dict(stack.result.manifests["nodepool--cluster--nvidia.yaml"])
    pool["spec"] = {**pool["spec"], "disruption": {**pool["spec"]["disruption"], "consolidationPolicy": "Sometimes"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(pool)


def test_validation_rejects_a_broken_core_object(stack):
    storage_class = {**stack.result.manifests["storageclass--cluster--gp3.yaml"], "reclaimPolicy": 3}
    with pytest.raises(Exception, match="reclaimPolicy"):
        validate(storage_class)
