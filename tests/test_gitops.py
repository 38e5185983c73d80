"""Argo CD for app teams: both delivery paths (the EKS capability in staging, the chart in dev and prod), each team's
fenced AppProject and ApplicationSet against the vendored CRDs, secrets, health checks, metrics, bad input, the rule."""
from __future__ import annotations

import copy
import json
import re

import lupa
import pytest
import yaml

from components.gitops import alert_rules, dashboard
from infra.config import ConfigError, parse
from infra.lib.argocd_health import HEALTH, IGNORE_DIFFERENCES
from infra.lib.team_access import creatable_kinds
from infra.lib.upstream import YamlLoader
from infra.offline.mocks import SECRET_MARK
from tests.conftest import ROOT, Synth
from tests.schemas import crd_schemas, validate
from tests.test_config import SECRET_KEYS, stack_raw
from tests.test_policies import broken, violations

PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
APPSET = "kubernetes:argoproj.io/v1alpha1:ApplicationSet"
CAPABILITY = "aws:eks/capability:Capability"
SECRET = "kubernetes:core/v1:Secret"


def rendered(stack: Synth, kind: str) -> list[dict]:
    return [r for r in stack.result.rendered if r["chartRendered"]["release"] == "argo-cd" and r["type"].endswith(f":{kind}")]


# -- both paths --------------------------------------------------------------------------------------------------------


def test_each_team_gets_one_project_and_one_application_set_valid_against_the_crds(stack):
    teams = sorted(stack_raw(stack.result.stack)["gitops"]["teams"])
    for typ in (PROJECT, APPSET):
        found = stack.of_type(typ)
        assert sorted(r["inputs"]["metadata"]["name"] for r in found) == teams
        for r in found:
            manifest = {k: v for k, v in r["inputs"].items() if k in ("apiVersion", "kind", "metadata", "spec")}
            validate(manifest)


def test_the_project_fences_the_team_to_its_namespace_its_kinds_and_its_repository(stack):
    raw = stack_raw(stack.result.stack)["gitops"]["teams"]["nlp"]
    spec = stack.one(PROJECT)["inputs"]["spec"]
    assert spec["sourceRepos"] == [raw["repoUrl"]]
    assert [d["namespace"] for d in spec["destinations"]] == ["nlp"]
    assert spec["clusterResourceWhitelist"] == []
    assert [(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]] == creatable_kinds()
    [role] = spec["roles"]
    assert role["groups"] == raw["groups"] and all(", nlp/*, allow" in p for p in role["policies"])


def test_the_application_set_follows_this_environments_overlay_into_the_team_namespace(stack):
    env = stack.result.stack
    spec = stack.one(APPSET)["inputs"]["spec"]
    assert spec["generators"] == [{"list": {"elements": [{"namespace": "nlp", "environment": env}]}}]
    template = spec["template"]["spec"]
    assert template["project"] == "nlp" and template["source"]["path"] == "overlays/{{.environment}}"
    assert template["destination"]["namespace"] == "{{.namespace}}"
    assert template["destination"]["server"] == stack.one(PROJECT)["inputs"]["spec"]["destinations"][0]["server"]
    # Kueue's suspend/resume is not drift, and a sync keeps Kueue's value.
    assert template["ignoreDifferences"] == IGNORE_DIFFERENCES and "RespectIgnoreDifferences=true" in template["syncPolicy"]["syncOptions"]
    # prod syncs when a person asks; dev and staging on every change.
    assert ("automated" in template["syncPolicy"]) == (env != "prod")


def test_the_application_set_waits_for_its_project_and_the_team_namespace(stack):
    appset, project = stack.one(APPSET), stack.one(PROJECT)
    assert stack.depends_on(appset, project)
    assert stack.depends_on(appset, stack.one("kubernetes:core/v1:Namespace", "tenancy-nlp"))


def test_the_outputs_name_the_endpoint_and_each_teams_project(stack):
    out = stack.result.outputs["gitops"]
    assert out["endpoint"].startswith("https://")
    assert out["projects"] == {
        "nlp": {"project": "nlp", "repoUrl": "https://git.example.com/ml-teams/nlp-delivery.git", "path": f"overlays/{stack.result.stack}"}
    }


# -- the capability (staging) ------------------------------------------------------------------------------------------


def test_staging_runs_the_eks_capability_with_its_own_role_and_identity_center(staging):
    cap = staging.one(CAPABILITY)["inputs"]
    assert (cap["type"], cap["deletePropagationPolicy"], cap["capabilityName"]) == ("ARGOCD", "RETAIN", "argocd")
    argo = cap["configuration"]["argoCd"]
    assert argo["namespace"] == "argocd" and argo["awsIdc"]["idcInstanceArn"].startswith("arn:aws:sso:::instance/")
    roles = {m["role"]: [i["id"] for i in m["identities"]] for m in argo["rbacRoleMappings"]}
    assert set(roles) == {"ADMIN", "VIEWER"}
    role = next(r for r in staging.of_type("aws:iam/role:Role") if r["outputs"]["arn"] == cap["roleArn"])
    trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "capabilities.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]
    assert not staging.of_type("kubernetes:helm.sh/v3:Release") or all(r["inputs"]["name"] != "argo-cd" for r in staging.of_type("kubernetes:helm.sh/v3:Release"))


def test_the_capability_may_act_in_the_team_namespaces_only(staging):
    association = staging.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "gitops-capability-teams")["inputs"]
    assert association["accessScope"] == {"type": "namespace", "namespaces": ["nlp"]}
    assert association["principalArn"] == staging.one(CAPABILITY)["inputs"]["roleArn"]


def test_the_cluster_is_registered_by_arn_and_the_crs_wait_for_the_capability(staging):
    secret = staging.one(SECRET, "gitops-in-cluster")["inputs"]
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"
    eks = staging.one("aws:eks/cluster:Cluster")["outputs"]
    # Secret data is a secret in state (the provider marks it so); the project names the same server.
    assert secret["stringData"] == {"name": SECRET_MARK, "server": SECRET_MARK}
    assert staging.one(PROJECT)["inputs"]["spec"]["destinations"][0]["server"] == eks["arn"]
    for typ in (PROJECT, APPSET):
        assert staging.depends_on(staging.one(typ), staging.one(CAPABILITY))


def test_the_private_repository_token_is_a_secret_in_no_artefact(staging, tmp_path):
    from infra.synth import write_artifacts

    secret = staging.one(SECRET, "gitops-nlp-repository")["inputs"]
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    assert secret["stringData"]["password"] == SECRET_MARK
    write_artifacts(staging.result, tmp_path)
    placeholder = "offline-placeholder-for-ml-platform-gitopsRepoTokens-nlp"
    assert "ml-platform:gitopsRepoTokens.nlp" in staging.result.placeholders
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert placeholder not in path.read_text(), path


def test_the_capability_waits_for_the_clusters_critical_add_ons(staging):
    cap = staging.one(CAPABILITY)
    assert staging.depends_on(cap, staging.one("aws:eks/nodeGroup:NodeGroup"))


# -- the chart (dev, prod) ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack_name, replicas", [("dev", 1), ("prod", 2)])
def test_the_chart_is_highly_available_in_prod_only(stack_name, replicas, request):
    stack = request.getfixturevalue(stack_name)
    workloads = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"]["replicas"] for r in rendered(stack, "Deployment") + rendered(stack, "StatefulSet")}
    for name in ("argo-cd-argocd-server", "argo-cd-argocd-repo-server", "argo-cd-argocd-applicationset-controller", "argo-cd-argocd-application-controller"):
        assert workloads[name] == replicas, name
    assert workloads["argo-cd-argocd-redis"] == 1
    assert len(rendered(stack, "PodDisruptionBudget")) == (4 if replicas > 1 else 0)


def test_the_chart_runs_on_the_general_pool_after_it_beside_the_monitoring_stack(prod):
    release = prod.release("argo-cd")
    assert prod.depends_on(release, prod.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool"))
    assert not prod.depends_transitively(release, prod.release("kube-prometheus-stack"))
    for r in rendered(prod, "Deployment") + rendered(prod, "StatefulSet"):
        pod = r["inputs"]["spec"]["template"]["spec"]
        # No system node selector or toleration: Karpenter's general pool (the chart's default selector is the OS only).
        assert pod.get("nodeSelector", {}) == {"kubernetes.io/os": "linux"} and not pod.get("tolerations"), r["name"]
        for c in pod["containers"]:
            assert c["resources"]["limits"] == {"memory": c["resources"]["requests"]["memory"]}, (r["name"], c["name"])


def test_each_metrics_service_of_the_chart_is_scraped_once(dev):
    services = [r["inputs"] for r in rendered(dev, "Service") if r["inputs"]["metadata"]["name"].endswith("-metrics")]
    monitors = [r for r in dev.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor") if r["inputs"]["metadata"]["namespace"] == "argocd"]
    assert len(services) == len(monitors) == 4 and not rendered(dev, "ServiceMonitor")
    for monitor in monitors:
        spec = monitor["inputs"]["spec"]
        selected = [s for s in services if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, monitor["name"]
        assert spec["endpoints"][0]["port"] in [p["name"] for p in selected[0]["spec"]["ports"]]
        assert dev.depends_on(monitor, dev.release("argo-cd")) and dev.depends_on(monitor, dev.release("kube-prometheus-stack"))


def test_argocd_cm_carries_the_platforms_health_checks(dev):
    [cm] = [r for r in rendered(dev, "ConfigMap") if r["inputs"]["metadata"]["name"] == "argocd-cm"]
    data = cm["inputs"]["data"]
    for key in HEALTH:
        assert data[f"resource.customizations.health.{key}"] == HEALTH[key]
    assert dev.depends_on(dev.one(PROJECT), dev.release("argo-cd"))
    rule = dev.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "gitops-alerts")
    assert [r["alert"] for r in rule["inputs"]["spec"]["groups"][0]["rules"]] == ["ArgoCdAppOutOfSync", "ArgoCdAppDegraded"]


def test_the_endpoint_is_the_rendered_server_service(dev):
    [svc] = [r for r in rendered(dev, "Service") if r["inputs"]["metadata"]["name"] == "argo-cd-argocd-server"]
    assert dev.result.outputs["gitops"]["endpoint"] == f"https://{svc['inputs']['metadata']['name']}.argocd.svc.cluster.local"


# -- what the project allows, what the health checks read, what the alerts read ---------------------------------------


def test_the_project_allows_what_the_team_role_may_create_and_nothing_it_may_only_read():
    kinds = creatable_kinds()
    assert ("apps", "Deployment") in kinds and ("jobset.x-k8s.io", "JobSet") in kinds
    for read_only in (("kueue.x-k8s.io", "LocalQueue"), ("", "ResourceQuota"), ("autoscaling.k8s.io", "VerticalPodAutoscaler")):
        assert read_only not in kinds
    # Every kind from a custom API is one the platform installs (its CRD is vendored).
    custom = {(api.split("/")[0], kind) for api, kind in crd_schemas()}
    assert [k for k in kinds if k[0] in {g for g, _ in custom} and k not in custom] == []
    assert {g for g, _ in kinds} - {"", "apps", "batch", "autoscaling", "policy", "resource.k8s.io"} <= {g for g, _ in custom}


def run_health(key: str, obj: dict) -> dict:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    as_lua = lambda v: lua.table_from({k: as_lua(x) for k, x in v.items()}) if isinstance(v, dict) else (  # noqa: E731
        lua.table_from([as_lua(x) for x in v]) if isinstance(v, list) else v
    )
    result = lua.execute(f"local obj = ...\n{HEALTH[key]}", as_lua(obj))
    return dict(result)


@pytest.mark.parametrize(
    "status, expected",
    [
        (None, "Progressing"),
        ({"conditions": [{"type": "Suspended", "status": "True"}]}, "Suspended"),
        ({"conditions": [{"type": "Suspended", "status": "False"}]}, "Progressing"),
        ({"terminalState": "Completed"}, "Healthy"),
        ({"terminalState": "Failed", "conditions": [{"type": "Failed", "status": "True", "message": "backoff"}]}, "Degraded"),
    ],
)
def test_a_jobset_reports_what_kueue_and_its_jobs_say(status, expected):
    obj = {"kind": "JobSet", **({"status": status} if status else {})}
    assert run_health("jobset.x-k8s.io_JobSet", obj)["status"] == expected


@pytest.mark.parametrize("active, expected", [("True", "Healthy"), ("False", "Degraded"), (None, "Progressing")])
def test_a_local_queue_is_healthy_when_kueue_activates_it(active, expected):
    obj = {"kind": "LocalQueue", "status": {"conditions": [{"type": "Active", "status": active}] if active else []}}
    assert run_health("kueue.x-k8s.io_LocalQueue", obj)["status"] == expected


def test_the_health_checks_read_only_status_fields_the_crds_define():
    schemas = crd_schemas()
    for key, script in HEALTH.items():
        group, kind = key.split("_")
        versions = [s for (api, k), s in schemas.items() if k == kind and api.startswith(f"{group}/")]
        assert versions, key
        read = set(re.findall(r"obj\.status\.(\w+)", script)) | set(re.findall(r"\bc\.(\w+)", script))
        fields = set()
        for s in versions:
            status = s["properties"]["status"]["properties"]
            fields |= set(status) | set(status["conditions"]["items"]["properties"])
        assert read <= fields, (key, read - fields)


def test_the_alerts_and_dashboard_read_labels_argocd_app_info_carries():
    source = (ROOT / "schemas" / "upstream" / "argo-cd" / "v3.4.4" / "controller" / "metrics" / "metrics.go").read_text()
    defaults = re.search(r'descAppDefaultLabels = \[\]string\{([^}]*)\}', source).group(1)
    info = re.search(r'"argocd_app_info",\s*"[^"]*",\s*append\(descAppDefaultLabels, ([^)]*)\)', source).group(1)
    labels = set(re.findall(r'"(\w+)"', defaults + info))
    exprs = [r["expr"] for g in alert_rules()["groups"] for r in g["rules"]] + [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    for expr in exprs:
        if "argocd_app_info" in expr:
            used = set(re.findall(r"by \(([^)]*)\)", expr)) | set(re.findall(r"(\w+)=~?\"", expr))
            used = {label.strip() for group in used for label in group.split(",")} - {""}
            assert used <= labels, (expr, used - labels)
    assert "argocd_app_sync_total" in source


# -- bad input and the rule ---------------------------------------------------------------------------------------------


def gitops_error(mutate, stack_name: str = "staging") -> str:
    raw = copy.deepcopy(stack_raw(stack_name))
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        parse(raw, SECRET_KEYS)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["gitops"]["teams"]["nlp"].update(repoUrl="https://github.com/someone/else.git"),
         "ml-platform:gitops.teams.nlp.repoUrl 'https://github.com/someone/else.git' is not under gitops.allowedRepoPrefixes"),
        (lambda r: r["gitops"]["teams"]["nlp"].update(repoUrl="git@git.example.com:ml-teams/nlp.git"), "ml-platform:gitops.teams.nlp.repoUrl"),
        (lambda r: r["gitops"]["teams"]["nlp"].update(namespaces=["nlp", "vision"]),
         "ml-platform:gitops.teams.nlp.namespaces[1] 'vision' is not a namespace of team 'nlp'"),
        (lambda r: r["gitops"]["teams"]["nlp"].update(path="overlays/../../other"), "ml-platform:gitops.teams.nlp.path"),
        (lambda r: r["gitops"].pop("capability"), "ml-platform:gitops.capability is required with mode capability"),
        (lambda r: r["gitops"]["teams"].update(vision=r["gitops"]["teams"]["nlp"]), "ml-platform:gitops.teams.vision: 'vision' is not one of the teams"),
        (lambda r: r.pop("gitopsRepoTokens"), "ml-platform:gitops.teams.nlp.private needs a token"),
    ],
)
def test_bad_gitops_input_names_the_key(mutate, expected):
    assert expected in gitops_error(mutate)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["inputs"]["spec"].update(clusterResourceWhitelist=[{"group": "*", "kind": "*"}]), "clusterResourceWhitelist allows cluster-scoped */*"),
        (lambda r: r["inputs"]["spec"]["destinations"][0].update(namespace="vision"), "destinations[0] namespace 'vision' is not team 'nlp'"),
        (lambda r: r["inputs"]["spec"]["destinations"][0].update(namespace="*"), "destinations[0] namespace '*' is not team 'nlp'"),
        (lambda r: r["inputs"]["spec"]["namespaceResourceWhitelist"].append({"group": "*", "kind": "*"}), "namespaceResourceWhitelist allows */* by wildcard"),
        (lambda r: r["inputs"]["metadata"]["labels"].pop("ml-platform.io/team"), "AppProject has no ml-platform.io/team label"),
    ],
)
def test_the_rule_refuses_a_project_that_reaches_beyond_its_team(mutate, expected):
    found = violations("app-project-fenced", broken("prod", PROJECT, mutate))
    assert [v["enforcement"] for v in found] and all(v["enforcement"] == "mandatory" for v in found)
    assert any(expected in v["message"] for v in found), found


def test_the_shipped_projects_pass_the_rule(stack):
    assert violations("app-project-fenced", stack.resources, stack.result.stack) == []


def test_the_argo_cd_crds_are_vendored_at_the_release_the_pinned_chart_installs():
    from infra.config.pins import PINS

    chart = yaml.safe_load((ROOT / "schemas" / "chart-sources" / "argo-cd" / PINS["argo-cd"] / "Chart.yaml").read_text())
    lock = yaml.safe_load((ROOT / "schemas" / "VENDORED.yaml").read_text())
    for crd in ("application", "applicationset", "appproject"):
        assert lock[f"crds/argo-cd/{crd}-crd.yaml"]["version"] == chart["appVersion"], crd
    assert yaml.load((ROOT / "schemas" / "crds" / "argo-cd" / "appproject-crd.yaml").read_text(), Loader=YamlLoader)["spec"]["names"]["kind"] == "AppProject"


def test_a_project_not_waiting_for_the_capability_has_no_crd_to_land_on():
    cap_urn = next(r["urn"] for r in broken("staging", CAPABILITY, lambda r: None) if r["type"] == CAPABILITY)

    def detach(record: dict) -> None:
        record["dependencies"] = [u for u in record["dependencies"] if u != cap_urn and "gitops-capability-teams" not in u and "gitops-in-cluster" not in u]

    found = violations("custom-resource-after-its-crd", broken("staging", PROJECT, detach), "staging")
    assert [v["message"] for v in found] == ["does not depend on the 'argo-cd' release or the EKS ARGOCD capability that installs the argoproj.io CRDs"]
    assert violations("custom-resource-after-its-crd", broken("staging", PROJECT, lambda r: None), "staging") == []
