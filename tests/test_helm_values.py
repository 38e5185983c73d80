"""The dead-values advisory: program values that no template of the pinned chart reads."""
from __future__ import annotations

import pytest

from policies.rules import helm_values
from tests.conftest import STACKS, synth_of

TEMPLATE = """\
{{- with .Values.pod }}
spec: {{ toYaml .resources | nindent 2 }}
{{- end }}
image: {{ index .Values "image-settings" "tag" }}
{{- $picked := pick .Values "cni" "env" }}
debug: {{ dig "logging" "debug" false .Values }}
region: {{ .Values.global.region }}
"""


@pytest.fixture
def chart(tmp_path, monkeypatch):
    root = tmp_path / "demo" / "1.0.0"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(
        "apiVersion: v2\nname: demo\nversion: 1.0.0\ndependencies:\n- name: sub\n  version: 0.1.0\n  condition: sub.enabled\n"
    )
    (root / "templates" / "a.yaml").write_text(TEMPLATE)
    (root / "charts" / "sub" / "templates").mkdir(parents=True)
    (root / "charts" / "sub" / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (root / "charts" / "sub" / "templates" / "b.yaml").write_text("size: {{ .Values.size }}\nzone: {{ .Values.global.zone }}\n")
    monkeypatch.setattr(helm_values, "CHART_SOURCES", tmp_path)
    monkeypatch.setattr(helm_values, "CACHE", tmp_path / "cache")
    helm_values.references.cache_clear()
    helm_values._prefixes.cache_clear()
    yield
    helm_values.references.cache_clear()
    helm_values._prefixes.cache_clear()


def test_every_way_a_template_reads_a_value_counts(chart):
    values = {
        "pod": {"resources": {"limits": {"memory": "1Gi"}}},  # under a parent a `with` block reads
        "image-settings": {"tag": "1.0"},  # index with quoted keys
        "cni": {"enabled": True},  # pick
        "logging": {"debug": True},  # dig
        "global": {"region": "eu-west-1", "zone": "a"},  # global, read by the parent and by the subchart
        "sub": {"enabled": True, "size": 3},  # a dependency's condition; the subchart's own value
    }
    assert helm_values.dead_values("demo", "1.0.0", values) == []


def test_keys_no_template_reads_are_named(chart):
    values = {"replicas": 2, "sub": {"colour": "red"}, "global": {"unused": 1}, "image-settings": {"digest": "x"}}
    assert helm_values.dead_values("demo", "1.0.0", values) == ["replicas", "sub.colour", "global.unused", "image-settings.digest"]
    # A map a template reads whole (`with`, `toYaml`) counts for every key below it: the rule errs towards "read".
    assert helm_values.dead_values("demo", "1.0.0", {"pod": {"replicas": 2}}) == []


def test_a_chart_that_is_not_vendored_is_not_judged(chart):
    assert helm_values.dead_values("absent", "1.0.0", {"anything": 1}) == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_vendored_release_of_the_shipped_stacks_sets_only_values_its_chart_reads(stack):
    dead = {
        r["name"]: helm_values.dead_values(str(r["inputs"]["chart"]).rsplit("/", 1)[-1], r["inputs"]["version"], r["inputs"].get("values") or {})
        for r in synth_of(stack).resources if r["type"] == "kubernetes:helm.sh/v3:Release"
    }
    assert {name: keys for name, keys in dead.items() if keys} == {}
    # Not vacuous: the releases of vendored charts have their references.
    assert helm_values.references("kube-prometheus-stack", synth_of(stack).release("kube-prometheus-stack")["inputs"]["version"])


def test_every_key_read_only_by_the_published_chart_is_still_set_and_still_unseen():
    from policies.rules.helm_values import NOT_IN_THE_TAG

    releases = [r["inputs"] for s in STACKS for r in synth_of(s).resources if r["type"] == "kubernetes:helm.sh/v3:Release"]
    for (chart, version, key), reason in NOT_IN_THE_TAG.items():
        assert reason
        set_by = [i for i in releases if str(i["chart"]).rsplit("/", 1)[-1] == chart and i["version"] == version
                  and key in {".".join(leaf) for leaf in helm_values._leaves(i.get("values") or {})}]
        assert set_by, f"no release sets {chart} {version} {key} any more"
        path = tuple(key.split("."))
        assert not any(path[:n] in helm_values.references(chart, version) for n in range(1, len(path) + 1)), f"{chart} now reads {key}"
