"""Helm releases rendered with the vendored charts by Helm's own engine, and judged like the program's objects."""
from __future__ import annotations

import pytest
import yaml

from infra.lib import helm
from infra.offline import helm_render
from infra.config.pins import PINS
from tests.conftest import STACKS, synth_of

JOBSET = ("jobset", "jobset", PINS["jobset"])


def controller(values: dict) -> dict:
    rendered = helm_render.render(*JOBSET, values, namespace="jobset-system", kube_version="1.35",
                                  cache_dir=helm_render.CACHE)
    [(_, _, container)] = [c for c in helm_render.containers(rendered) if c[2]["name"] == "controller"]
    return container


def test_a_null_through_the_values_removes_the_charts_default():
    without = {"controller": {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}}}
    # Helm merges the program's limits into the chart's: the chart's 2-CPU default survives a map without it.
    assert controller(without)["resources"]["limits"] == {"cpu": 2, "memory": "256Mi"}
    assert controller({"controller": {"resources": helm.resources("250m", "256Mi")}})["resources"]["limits"] == {"memory": "256Mi"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_sends_the_null_and_the_rendered_controller_has_no_cpu_limit(stack):
    release = synth_of(stack).release("jobset")
    assert release["inputs"]["values"]["controller"]["resources"]["limits"] == {"cpu": None, "memory": "256Mi"}
    [deployment] = [r for r in synth_of(stack).result.rendered
                    if r["type"] == "kubernetes:apps/v1:Deployment" and r["chartRendered"]["release"] == "jobset"]
    [c] = deployment["inputs"]["spec"]["template"]["spec"]["containers"]
    assert "cpu" not in c["resources"]["limits"] and c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]
    assert c["image"] == f"registry.k8s.io/jobset/jobset:v{PINS['jobset']}"


def test_rendered_objects_are_judged_and_excepted_only_by_the_reviewed_file():
    policy = synth_of("prod").result.policy
    rendered = {r["urn"] for r in synth_of("prod").result.rendered}
    assert not [v for v in policy["violations"] if v["urn"] in rendered]
    entries = yaml.safe_load(helm_render.EXCEPTIONS.read_text())
    used = {(v["policy"], v["urn"].rsplit("::", 1)[1]) for s in STACKS for v in synth_of(s).result.policy["excepted"]}
    for e in entries:
        assert e["reason"] and e["upstream"], e
        assert (e["rule"], f"{e['release']}/{e['object']}") in used, f"exception nothing needs any more: {e}"


def test_a_pinned_chart_that_is_not_vendored_names_the_chart_and_the_refresh_command():
    with pytest.raises(helm_render.ChartNotVendored, match=r"chart jobset 9\.9\.9 .* schemas/refresh\.py --charts jobset"):
        helm_render.render("jobset", "jobset", "9.9.9", {}, namespace="x", kube_version="1.35")


def test_a_chart_that_fails_to_render_names_the_release_template_and_helms_message(tmp_path, monkeypatch):
    chart = tmp_path / "broken" / "1.0.0"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 1.0.0\n")
    (chart / "templates" / "cm.yaml").write_text('kind: ConfigMap\ndata: {x: {{ required "x is required" .Values.x }}}\n')
    monkeypatch.setattr(helm_render, "CHART_SOURCES", tmp_path)
    with pytest.raises(helm_render.RenderError, match=r"release demo .*broken/templates/cm\.yaml.*x is required"):
        helm_render.render("demo", "broken", "1.0.0", {}, namespace="x", kube_version="1.35")


def test_every_release_of_a_vendored_chart_must_render(monkeypatch, tmp_path):
    # A chart-sources entry whose directory is missing stops the render (the synth exits 2 on it), naming the chart.
    records = synth_of("dev").resources
    monkeypatch.setattr(helm_render, "CHART_SOURCES", tmp_path)
    with pytest.raises(helm_render.ChartNotVendored, match=r"chart [\w-]+ \S+ is pinned but not vendored .*schemas/refresh\.py --charts"):
        helm_render.render_releases(records, "dev", cache_dir=None)


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_the_program_or_a_chart_declares_has_a_cpu_limit(stack):
    # The pack's memory rule covers limits = requests; a CPU limit throttles under CFS even on an idle node.
    from policies.rules.workloads import containers, pod_spec

    synth = synth_of(stack)
    limited = [
        (r["name"], c.get("name"))
        for r in synth.resources + synth.result.rendered
        for c in containers(pod_spec(r["type"], r["inputs"]) or {})
        # A null the chart does not delete would reach the object as a null quantity: absent is the only pass.
        if "cpu" in ((c.get("resources") or {}).get("limits") or {})
    ]
    assert [x for x in limited if x not in UPSTREAM_CPU_LIMITS] == []


# Rendered containers whose CPU limit no chart value can remove, and why.
UPSTREAM_CPU_LIMITS = {
    # kserve-resources v0.20.0 deep-merges its values into the base manifest (files/kserve/resources.yaml, manager
    # limits.cpu 100m; templates/_utils.tpl deepMerge): a value replaces the limit, a null or an absent key keeps it.
    ("kserve/kserve-controller-manager", "manager"),
}


def test_the_kserve_controller_keeps_only_the_base_manifests_cpu_limit(staging):
    [manager] = [c for r in staging.result.rendered if r["name"] == "kserve/kserve-controller-manager" and r["type"] == "kubernetes:apps/v1:Deployment"
                 for c in r["inputs"]["spec"]["template"]["spec"]["containers"] if c["name"] == "manager"]
    assert manager["resources"] == {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"cpu": "100m", "memory": "300Mi"}}


def _rendered(stack: str, release: str, kind: str, name: str) -> dict:
    [obj] = [r["inputs"] for r in synth_of(stack).result.rendered
             if r["chartRendered"]["release"] == release and r["type"] == kind and r["inputs"]["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize("stack", STACKS)
def test_injected_sidecars_and_the_gateway_have_no_cpu_limit_and_pinned_images(stack):
    # The injector renders each sidecar from the values istiod's chart writes into this ConfigMap. Istio's charts
    # merge their defaults in a template, so the null reaches it as a null; the injection template drops nulls
    # (`omitNil`), which takes the chart's 2-CPU default limit off every sidecar.
    injector = _rendered(stack, "istiod", "kubernetes:core/v1:ConfigMap", "istio-sidecar-injector")
    proxy = yaml.safe_load(injector["data"]["values"])["global"]["proxy"]["resources"]
    assert proxy["limits"] == {"cpu": None, "memory": proxy["requests"]["memory"]}
    assert "toYaml (omitNil .Values.global.proxy.resources)" in injector["data"]["config"]
    gateway = _rendered(stack, "istio-ingressgateway", "kubernetes:apps/v1:Deployment", "istio-ingressgateway")
    [c] = gateway["spec"]["template"]["spec"]["containers"]
    assert "cpu" not in c["resources"]["limits"] and c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]
    istiod = _rendered(stack, "istiod", "kubernetes:apps/v1:Deployment", "istiod")
    assert istiod["spec"]["template"]["spec"]["containers"][0]["image"] == f"docker.io/istio/pilot:{PINS['istio']}"


@pytest.mark.parametrize("stack", STACKS)
def test_gpu_operator_has_no_cpu_limit_and_nfd_memory_limits_equal_requests(stack):
    rendered = [r for r in synth_of(stack).result.rendered if r["chartRendered"]["release"] == "gpu-operator"]
    operator = _rendered(stack, "gpu-operator", "kubernetes:apps/v1:Deployment", "gpu-operator")
    [c] = operator["spec"]["template"]["spec"]["containers"]
    assert "cpu" not in c["resources"]["limits"] and c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]
    assert c["image"] == f"nvcr.io/nvidia/gpu-operator:{PINS['gpu-operator']}"
    # The node-feature-discovery subchart comes from the chart's charts/ and renders with it.
    from policies.rules.workloads import containers, pod_spec

    nfd = {(r["inputs"]["metadata"]["name"], c["name"]): c["resources"] for r in rendered
           if r["chartRendered"]["template"].startswith("gpu-operator/charts/node-feature-discovery/")
           for c in containers(pod_spec(r["type"], r["inputs"]) or {})}
    assert {name for name, _ in nfd} >= {"gpu-operator-node-feature-discovery-master",
                                         "gpu-operator-node-feature-discovery-worker", "gpu-operator-node-feature-discovery-gc"}
    for key, res in nfd.items():
        assert res["limits"] == {"memory": res["requests"]["memory"]}, key


@pytest.mark.parametrize("stack", STACKS)
def test_karpenter_renders_the_published_chart_and_its_pinned_controller_image(stack):
    # At the git tag the chart still names 1.13.0; the vendored chart is the one the release pipeline published.
    for chart in ("karpenter", "karpenter-crd"):
        meta = yaml.safe_load((helm_render.chart_dir(chart, PINS["karpenter"]) / "Chart.yaml").read_text())
        assert (meta["version"], meta["appVersion"]) == (PINS["karpenter"], PINS["karpenter"])
    controller = _rendered(stack, "karpenter", "kubernetes:apps/v1:Deployment", "karpenter")
    [c] = controller["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith(f"public.ecr.aws/karpenter/controller:{PINS['karpenter']}@sha256:")


@pytest.mark.parametrize("stack", STACKS)
def test_the_monitoring_chart_renders_with_the_subcharts_its_package_ships(stack):
    rendered = [r for r in synth_of(stack).result.rendered if r["chartRendered"]["release"] == "kube-prometheus-stack"]
    workloads = {(r["inputs"]["kind"], r["chartRendered"]["template"].split("/templates/")[0]) for r in rendered
                 if r["inputs"]["kind"] in ("Deployment", "DaemonSet")}
    assert workloads >= {
        ("Deployment", "kube-prometheus-stack"),
        ("Deployment", "kube-prometheus-stack/charts/grafana"),
        ("Deployment", "kube-prometheus-stack/charts/kube-state-metrics"),
        ("DaemonSet", "kube-prometheus-stack/charts/prometheus-node-exporter"),
    }
    # Helm test hooks are off (a release never runs them) and Grafana's root chown init container is not rendered.
    grafana = _rendered(stack, "kube-prometheus-stack", "kubernetes:apps/v1:Deployment", "kube-prometheus-stack-grafana")
    assert [c["name"] for c in grafana["spec"]["template"]["spec"].get("initContainers") or []] == []
    assert not [r for r in rendered if r["inputs"]["kind"] == "Pod"]


def test_stack_rules_see_rendered_objects_and_a_rendered_claim_waits_for_its_storage_class():
    from policies.rules.placement import system_pods
    from tests.test_policies import violations

    synth = synth_of("prod")
    [claim] = [r for r in synth.result.rendered if r["type"] == "kubernetes:core/v1:PersistentVolumeClaim"]
    assert claim["outputs"]["spec"]["storageClassName"] == "gp3"
    [sc] = [r for r in synth.resources if r["type"] == "kubernetes:storage.k8s.io/v1:StorageClass" and r["inputs"]["metadata"]["name"] == "gp3"]
    assert sc["urn"] in claim["dependencies"]
    # Without the edge, the await rule finds the rendered claim.
    records = [{**r, "dependencies": [d for d in r["dependencies"] if d != sc["urn"]]} if r["name"] == "observability" or r is claim else r
               for r in synth.resources + synth.result.rendered]
    assert [v["urn"] for v in violations("await-prerequisites-in-graph", records)] == [claim["urn"]]

    class Res:  # the stack rules' view of a record
        def __init__(self, record, parent=None):
            self.resource_type, self.props, self.parent = record["type"], record["outputs"], parent

    # A chart's rendered pods are counted once, from the release's values, not again from the render.
    release = synth.release("kube-prometheus-stack")
    rendered = [r for r in synth.result.rendered if r["chartRendered"]["release"] == "kube-prometheus-stack"]
    node_labels = {"ml-platform.io/pool": "system"}
    once = system_pods([Res(release)], node_labels)
    assert once
    assert system_pods([Res(release), *[Res(r, Res(release)) for r in rendered]], node_labels) == once


# The chart's own CRDs for the kinds schemas/crds does not vendor (its crds subchart installs them).
CHART_CRDS = [f"kube-prometheus-stack/{PINS['kube-prometheus-stack']}/charts/crds/crds/crd-{n}.yaml" for n in ("prometheuses", "alertmanagers")]


@pytest.fixture(scope="module")
def crd_schemas() -> dict:
    from tests.schemas import crd_schemas as vendored

    found = dict(vendored())
    for path in CHART_CRDS:
        doc = yaml.load((helm_render.CHART_SOURCES / path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for version in doc["spec"]["versions"]:
            found[(f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_custom_resources_charts_render_validate_against_their_crds(stack, crd_schemas):
    import jsonschema

    checked = set()
    for r in synth_of(stack).result.rendered:
        obj = r["inputs"]
        key = (obj["apiVersion"], obj["kind"])
        if key in crd_schemas:
            jsonschema.Draft7Validator(crd_schemas[key]).validate(obj)
            checked.add(obj["kind"])
    assert {"Prometheus", "Alertmanager", "PrometheusRule", "ServiceMonitor"} <= checked


def test_rendered_secrets_carry_no_generated_key():
    # The load balancer controller's chart makes a webhook certificate and key at render time (genSignedCert).
    secrets = [r["inputs"] for r in synth_of("prod").result.rendered if r["inputs"]["kind"] == "Secret"]
    tls = [s for s in secrets if s["metadata"]["name"] == "aws-load-balancer-tls"]
    assert tls and set(tls[0]["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert {v for s in secrets for v in (s.get("data") or {}).values()} <= {helm_render.REDACTED, ""}


def test_templates_split_into_documents_as_helm_writes_them():
    """Helm trims each document and ends it with a line break in the release manifest; a separator may carry text."""
    text = "a: 1\n---# Permission to approve\nkind: ConfigMap\ndata:\n  config.yaml: |\n    rules: []\n\n---\n\nkind: Secret\n"
    docs = helm_render._split({"chart/templates/x.yaml": text, "chart/templates/NOTES.txt": "kind: Note\n"})
    assert docs == {"chart/templates/x.yaml": [{"a": 1}, {"kind": "ConfigMap", "data": {"config.yaml": "rules: []\n"}}, {"kind": "Secret"}]}


def test_a_remembered_digest_follows_each_change_of_the_files(tmp_path, monkeypatch):
    """The digest a warm synth takes from the cache (by sizes and modification times) is the digest of the bytes."""
    import hashlib
    import os

    monkeypatch.setattr(helm_render, "CACHE", tmp_path / "cache")
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    files = [chart / "Chart.yaml", chart / "templates" / "a.yaml"]
    files[0].write_text("name: x\n")
    files[1].write_text("kind: A\n")

    def full() -> str:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.relative_to(chart).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        return digest.hexdigest()

    first = helm_render.chart_digest(chart)
    assert first == full() == helm_render.chart_digest(chart)
    files[1].write_text("kind: B\n")  # same size, a new modification time
    os.utime(files[1], ns=(10**18, 10**18))
    assert helm_render.chart_digest(chart) == full() != first


def test_folders_alike_in_names_sizes_and_times_have_their_own_digests(tmp_path, monkeypatch):
    """A copy that keeps times (cp -p, tar) of another version of a chart is not taken for it."""
    import os

    monkeypatch.setattr(helm_render, "CACHE", tmp_path / "cache")
    for version, text in (("1.0.0", "kind: A\n"), ("1.0.1", "kind: B\n")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "Chart.yaml").write_text(text)
        os.utime(tmp_path / version / "Chart.yaml", ns=(10**18, 10**18))
    assert helm_render.chart_digest(tmp_path / "1.0.0") != helm_render.chart_digest(tmp_path / "1.0.1")
