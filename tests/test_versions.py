"""The supported-version rules: a dated table, mandatory past the end of support, advisory in extended/deprecated."""
from __future__ import annotations

import datetime

import pytest

from infra.offline.policy_check import check
from policies.rules.versions import DEPRECATED, ENDED, EXTENDED, SUPPORTED, chart_status, kubernetes_status
from tests.conftest import STACKS, synth_of
from tests.test_policies import RULES_BY_NAME, broken, set_in

day = datetime.date.fromisoformat


@pytest.mark.parametrize(
    "version, on, status",
    [
        ("1.35", "2026-11-25", SUPPORTED),
        ("1.34", "2026-12-02", SUPPORTED),
        ("1.34", "2026-12-03", EXTENDED),
        ("1.31", "2026-11-26", EXTENDED),
        ("1.31", "2026-11-27", ENDED),
        ("1.29", "2026-11-25", ENDED),
    ],
)
def test_kubernetes_status_follows_the_eks_calendar(version, on, status):
    assert kubernetes_status(version, day(on))[0] == status


@pytest.mark.parametrize(
    "chart, version, status",
    [
        ("gpu-operator", "v26.7.0", SUPPORTED),
        ("gpu-operator", "v26.3.3", DEPRECATED),
        ("gpu-operator", "v25.10.1", ENDED),
        ("istiod", "1.29.6", DEPRECATED),
        ("istiod", "1.27.2", ENDED),
        ("kube-prometheus-stack", "88.5.3", None),
    ],
)
def test_chart_status_follows_each_projects_policy(chart, version, status):
    found = chart_status(chart, version)
    assert (found[0] if found else None) == status


def test_every_stack_runs_supported_versions_today():
    for stack in STACKS:
        assert not [v for v in synth_of(stack).result.policy["violations"] if v["policy"] == "version-supported"], stack


def test_an_ended_chart_version_is_a_mandatory_violation_and_a_deprecated_one_advisory():
    ended = broken("prod", "kubernetes:helm.sh/v3:Release", set_in(["inputs", "version"], "v25.10.1"), "accelerators-gpu-operator")
    [violation] = check(ended, "prod", rules=[RULES_BY_NAME["version-supported"]])["violations"]
    assert violation["enforcement"] == "mandatory" and "gpu-operator v25.10.1 is older than every supported line" in violation["message"]
    deprecated = broken("prod", "kubernetes:helm.sh/v3:Release", set_in(["inputs", "version"], "v26.3.3"), "accelerators-gpu-operator")
    [violation] = check(deprecated, "prod", rules=[RULES_BY_NAME["version-in-standard-support"]])["violations"]
    assert violation["enforcement"] == "advisory" and "deprecated" in violation["message"]
