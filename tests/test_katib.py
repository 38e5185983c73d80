"""Katib: upstream's rendered overlay created object by object with the platform's changes, its database on Aurora,
and an Experiment per study whose trials go through the team's queue; every object validates."""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from components.katib import CREDENTIALS, INJECTION_LABEL, NAMESPACE, TRIAL_LABEL, platform_objects, upstream_objects
from infra.config.pins import PINS
from infra.lib.conventions import DATABASE_CLIENT_LABEL, UPSTREAM_LABEL
from infra.lib.gang import LOCAL_QUEUE, QUEUE_LABEL
from tests.conftest import ROOT, STACKS, synth_of
from tests.schemas import validate
from tests.test_config import error_of_raw, stack_raw

EXPERIMENT = "kubernetes:kubeflow.org/v1beta1:Experiment"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def upstream(s) -> dict[tuple[str, str], dict]:
    """(kind, name) -> the program's record of each object created from the vendored render."""
    return {(r["inputs"]["kind"], r["inputs"]["metadata"]["name"]): r for r in s.resources
            if ((r["inputs"].get("metadata") or {}).get("labels") or {}).get(UPSTREAM_LABEL) == "katib"}


def test_the_vendored_render_is_created_object_by_object_less_the_database_secret(staging):
    vendored = {(o["kind"], o["metadata"]["name"]) for o in upstream_objects(PINS["katib"])}
    created = upstream(staging)
    # Each validates with every other manifest (tests/test_manifests.py).
    # The `kubeflow` Namespace is Pipelines' where both run (one owner per object).
    shared = {("Namespace", NAMESPACE)} if "pipelines" in staging.result.outputs else set()
    assert set(created) == {k for k in vendored if not k[1].startswith("katib-mysql-secrets")} - shared


def test_the_platform_changes_to_upstream_are_the_documented_ones():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in platform_objects(PINS["katib"], {"host": "writer.example", "port": "3306"})}
    db = objects[("Deployment", "katib-db-manager")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"] for e in db["containers"][0]["env"]}
    assert env["DB_USER"] == {"name": CREDENTIALS, "key": "username"} and env["DB_PASSWORD"] == {"name": CREDENTIALS, "key": "password"}
    assert (env["KATIB_MYSQL_DB_DATABASE"], env["KATIB_MYSQL_DB_HOST"], env["KATIB_MYSQL_DB_PORT"]) == ("katib", "writer.example", "3306")
    assert db["automountServiceAccountToken"] is False
    config = yaml.safe_load(objects[("ConfigMap", "katib-config")]["data"]["katib-config.yaml"])
    assert config["init"]["controller"]["trialResources"] == ["Job.v1.batch"]
    for entry in config["runtime"]["metricsCollectors"] + config["runtime"]["suggestions"]:
        # Katib sets a CPU limit unless told -1 (pkg/apis/config/v1beta1/defaults.go at the pin).
        assert entry["resources"]["limits"]["cpu"] == "-1" and entry["resources"]["limits"]["memory"] == entry["resources"]["requests"]["memory"]
    [pod_hook] = [h for h in objects[("MutatingWebhookConfiguration", "katib.kubeflow.org")]["webhooks"] if h["name"] == "mutator.pod.katib.kubeflow.org"]
    assert pod_hook["objectSelector"] == {"matchLabels": {TRIAL_LABEL: "true"}}
    for name in ("katib-controller", "katib-db-manager", "katib-ui"):
        [c] = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert "cpu" not in c["resources"]["limits"] and c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]
        assert c["readinessProbe"]
    assert objects[("Namespace", NAMESPACE)]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The vendored render itself is untouched by the changes.
    assert not any(o["kind"] == "Deployment" and "resources" in o["spec"]["template"]["spec"]["containers"][0] for o in upstream_objects(PINS["katib"]))


@pytest.mark.parametrize("stack", STACKS)
def test_katib_runs_on_the_general_pool_with_its_webhooks_registered_before_it_starts(stack):
    s = synth_of(stack)
    created = upstream(s)
    controller = created[("Deployment", "katib-controller")]
    cpu = next(p for p in s.of_type(NODE_POOL) if p["inputs"]["metadata"]["name"] == "cpu")
    assert s.depends_on(controller, cpu)
    # The webhooks exist when the controller starts, so its certificate generator writes its CA into them.
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert s.depends_transitively(controller, created[(kind, "katib.kubeflow.org")])
    # Its database appears once the init Job ran, which nothing awaits: neither is the DB manager.
    assert created[("Deployment", "katib-db-manager")]["inputs"]["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    job = s.one("kubernetes:batch/v1:Job", "katib-database")
    assert "CREATE DATABASE IF NOT EXISTS katib" in job["inputs"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job["inputs"]["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_staging_tunes_through_the_team_queue_with_an_experiment_that_validates(staging):
    [experiment] = staging.of_type(EXPERIMENT)
    manifest = experiment["inputs"]
    validate(manifest)
    spec = manifest["spec"]
    assert manifest["metadata"]["namespace"] == "nlp" and spec["objective"] == {"type": "minimize", "objectiveMetricName": "loss"}
    job = spec["trialTemplate"]["trialSpec"]
    assert job["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE and job["spec"]["suspend"] is True
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"][TRIAL_LABEL] == "true"
    command = " ".join(pod["spec"]["containers"][0]["command"])
    assert all(f"${{trialParameters.{p['name']}}}" in command for p in spec["parameters"])
    queue = next(r for r in staging.resources if r["type"].endswith(":LocalQueue") and r["inputs"]["metadata"]["namespace"] == "nlp")
    assert staging.depends_on(experiment, queue)
    hooks = upstream(staging)
    assert staging.depends_transitively(experiment, hooks[("ValidatingWebhookConfiguration", "katib.kubeflow.org")])
    assert staging.depends_transitively(experiment, hooks[("Deployment", "katib-controller")])
    patch = staging.one("kubernetes:core/v1:NamespacePatch")
    assert patch["inputs"]["metadata"] == {"name": "nlp", "labels": {INJECTION_LABEL: "enabled"}}
    assert staging.depends_on(experiment, patch)
    policies = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in staging.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                if r["inputs"]["metadata"]["namespace"] == "nlp"}
    assert policies["katib-trials"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 6789}]


def test_katib_metrics_are_scraped_with_the_experiments_namespace_and_charted(prod):
    monitor = next(r for r in prod.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor") if r["inputs"]["metadata"]["name"] == "katib-controller")
    validate(monitor["inputs"])
    assert monitor["inputs"]["spec"]["endpoints"][0]["honorLabels"] is True
    service = upstream(prod)[("Service", "katib-controller")]["inputs"]
    assert monitor["inputs"]["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    board = next(r for r in prod.of_type("kubernetes:core/v1:ConfigMap") if r["inputs"]["metadata"]["name"] == "dashboard-ml-tuning")
    assert "katib_trials_current" in board["inputs"]["data"]["ml-tuning.json"]


STUDY = {
    "name": "lr", "team": "nlp", "image": "x/y:1", "command": ["train", "--lr", "${trialParameters.lr}"],
    "objective": {"type": "minimize", "metric": "loss"}, "parameters": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1}],
    "resources": {"cpu": "1", "memoryGib": 2},
}


def _with_study(**change) -> str:
    raw = copy.deepcopy(stack_raw("staging"))
    study = copy.deepcopy(STUDY)
    for key, value in change.items():
        study[key] = value
    raw["training"] = {"katib": {"studies": [study]}}
    return error_of_raw(raw)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"objective": {"type": "minimize", "metric": "loss", "additionalMetrics": ["loss"]}}, "additionalMetrics repeats the objective metric 'loss'"),
        ({"objective": {"type": "lowest", "metric": "loss"}}, "training.katib.studies[0].objective.type: \"lowest\" is not allowed"),
        ({"parameters": [{"name": "lr", "type": "double", "min": 0.1, "max": 0.001}]}, "parameter 'lr': min 0.1 is not below max 0.001"),
        ({"parameters": [{"name": "lr", "type": "categorical", "min": 1, "max": 2}]}, "parameter 'lr' of type categorical needs values"),
        ({"parameters": [{"name": "lr", "type": "int", "min": 0.5, "max": 2}]}, "parameter 'lr' of type int has a fractional min, max or step"),
        ({"command": ["train"]}, "parameters ['lr'] never reach a trial"),
        ({"team": "vision"}, "training.katib.studies[0].team 'vision' is not one of the teams"),
        ({"algorithm": "enas"}, "training.katib.studies[0].algorithm: \"enas\" is not allowed"),
    ],
)
def test_a_study_with_a_bad_objective_or_search_space_is_refused_naming_the_key(change, expected):
    assert expected in _with_study(**change)


def test_only_katibs_api_clients_may_mount_their_token(staging):
    from infra.offline.policy_check import check
    from policies.rules import RULES

    rule = next(r for r in RULES if r.name == "service-account-token-not-mounted")
    records = [copy.deepcopy(r) for (kind, _), r in upstream(staging).items() if kind == "Deployment"]
    assert check(records, "staging", rules=[rule])["violations"] == []
    db = next(r for r in records if r["inputs"]["metadata"]["name"] == "katib-db-manager")
    del db["inputs"]["spec"]["template"]["spec"]["automountServiceAccountToken"]
    assert [v["urn"] for v in check(records, "staging", rules=[rule])["violations"]] == [db["urn"]]


def test_the_db_manager_reads_its_credentials_from_the_platform_database(staging):
    created = upstream(staging)
    [ns] = [r["inputs"]["metadata"]["labels"] for r in staging.of_type("kubernetes:core/v1:Namespace") if r["inputs"]["metadata"]["name"] == NAMESPACE]
    assert ns[DATABASE_CLIENT_LABEL] == "true"
    [secret] = [r for r in staging.of_type("kubernetes:external-secrets.io/v1:ExternalSecret")
                if r["inputs"]["metadata"]["namespace"] == NAMESPACE and r["inputs"]["metadata"]["name"] == CREDENTIALS]
    assert secret["inputs"]["metadata"]["name"] == CREDENTIALS and secret["inputs"]["spec"]["secretStoreRef"]["kind"] == "ClusterSecretStore"
    manager, job = created[("Deployment", "katib-db-manager")], staging.one("kubernetes:batch/v1:Job", "katib-database")
    assert staging.depends_on(manager, secret) and staging.depends_on(job, secret)
    instance = staging.of_type("aws:rds/clusterInstance:ClusterInstance")[0]
    assert staging.depends_on(job, instance)


def test_training_needs_the_platform_database():
    raw = copy.deepcopy(stack_raw("staging"))
    raw["database"] = {"enabled": False}
    assert "training.enabled needs database.enabled" in error_of_raw(raw)


def test_one_owner_for_the_kubeflow_namespace_and_katib_out_of_its_mesh(stack):
    """Pipelines and Katib both live in `kubeflow`: one resource creates it, and Katib's pods skip the sidecar its
    meshed namespace would inject (the API server calls the controller's webhooks in plain TLS)."""
    owners = [r for r in stack.of_type("kubernetes:core/v1:Namespace") if r["inputs"]["metadata"]["name"] == "kubeflow"]
    assert len(owners) == 1
    katib = [r for r in stack.of_type("kubernetes:apps/v1:Deployment") if r["inputs"]["metadata"]["name"].startswith("katib-")]
    assert katib and all(d["inputs"]["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false" for d in katib)
    if "pipelines" in stack.result.outputs:
        assert any(stack.depends_on(d, owners[0]) or stack.depends_transitively(d, owners[0]) for d in katib)


def test_the_ui_is_on_the_gateway_behind_the_token_check_where_pipelines_ui_is(prod, dev):
    from components.katib import UI_PATH, UI_PORT

    m = prod.result.manifests
    route = m["httproute--kubeflow--katib-ui.yaml"]["spec"]
    assert route["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": UI_PATH}}]
    assert route["rules"][0]["backendRefs"] == [{"name": "katib-ui", "port": 80}]
    deny = m["authorizationpolicy--istio-ingress--katib-ui-require-jwt.yaml"]["spec"]
    assert deny["action"] == "DENY" and deny["rules"][0]["from"] == [{"source": {"notRequestPrincipals": ["*"]}}]
    assert deny["rules"][0]["to"] == [{"operation": {"paths": [UI_PATH, f"{UI_PATH}/*"]}}]
    # The UI authorizes each caller by the header the Gateway writes from the token, with rights to ask the API server.
    env = {e["name"]: e.get("value") for e in m["deployment--kubeflow--katib-ui.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["APP_DISABLE_AUTH"] == "false" and env["USERID_HEADER"] == "kubeflow-userid"
    assert {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]} in m["clusterrole--cluster--katib-ui.yaml"]["rules"]
    # Its pods are outside the mesh: only the Gateway's pods reach them.
    [ingress] = m["networkpolicy--kubeflow--katib-ui-from-gateway.yaml"]["spec"]["ingress"]
    assert ingress["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "istio-ingress"}}
    assert ingress["from"][0]["podSelector"] == {"matchLabels": {"istio": "ingressgateway"}} and ingress["ports"] == [{"protocol": "TCP", "port": UI_PORT}]
    # The team's UI users (Pipelines' list) may do in its namespace what the UI does for them.
    binding = m["rolebinding--nlp--katib-ui-user.yaml"]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "nlp-lead@example.com"}]
    # The route opens once the token is checked and required, and the UI runs.
    by_name = {r["inputs"]["metadata"]["name"]: r for r in prod.resources if r["custom"] and "metadata" in r["inputs"]}
    route_record = next(r for r in prod.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute") if r["inputs"]["metadata"]["name"] == "katib-ui")
    for needed in ("kubeflow-pipelines-jwt", "katib-ui-require-jwt"):
        assert prod.depends_on(route_record, by_name[needed]), needed
    assert prod.depends_transitively(route_record, upstream(prod)[("Deployment", "katib-ui")])
    # Port-forward only where Pipelines' UI is: the UI keeps upstream's standalone mode.
    assert "httproute--kubeflow--katib-ui.yaml" not in dev.result.manifests and "role--nlp--katib-ui-user.yaml" not in dev.result.manifests
    dev_env = dev.result.manifests["deployment--kubeflow--katib-ui.yaml"]["spec"]["template"]["spec"]["containers"][0].get("env", [])
    assert "APP_DISABLE_AUTH" not in {e["name"] for e in dev_env}


@pytest.mark.parametrize("stack", STACKS)
def test_grouped_objects_answer_to_the_urns_they_had_as_resources_of_their_own(stack):
    """Each Katib group registers the alias transform; it gives every object a group applies the name and parent it
    had when registered alone (as the certificate's Secret still is), so an `up` over an older stack adopts the
    objects instead of replacing them."""
    import pulumi

    from components.katib import own_resource_names

    s = synth_of(stack)
    [component] = [r for r in s.resources if r["type"] == "ml-platform:katib:Katib"]
    groups = {r["urn"] for r in s.resources if r["type"] == "kubernetes:yaml/v2:ConfigGroup" and r["parent"] == component["urn"]}
    assert groups and all(s.result.transforms.get(u) == 1 for u in groups)
    transform = own_resource_names(component["name"], "the component")
    formerly = {}
    for child in (r for r in s.resources if r["parent"] in groups):
        result = transform(pulumi.ResourceTransformArgs(True, child["type"], child["name"], child["inputs"], pulumi.ResourceOptions()))
        [alias] = result.opts.aliases
        assert alias.parent == "the component" and result.props is child["inputs"]
        formerly[(child["inputs"]["kind"], child["inputs"]["metadata"]["name"])] = alias.name
    assert formerly[("Deployment", "katib-controller")] == "katib-deployment-kubeflow-katib-controller"
    assert formerly[("CustomResourceDefinition", "experiments.kubeflow.org")] == "katib-customresourcedefinition-experiments.kubeflow.org"
    secret = next(r for r in s.resources if r["type"] == "kubernetes:core/v1:Secret" and r["parent"] == component["urn"])
    assert secret["name"] == "katib-secret-kubeflow-katib-webhook-cert"
    assert transform(pulumi.ResourceTransformArgs(False, "kubernetes:yaml/v2:ConfigGroup", "katib-crds", {}, pulumi.ResourceOptions())) is None


def test_a_changed_study_replaces_its_experiment_instead_of_failing_the_update():
    """Katib's webhook refuses any change of a created Experiment but its trial counts, and those once it completed
    (unless restartable) or at or below the trials it ran: an `up` that changes a study replaces its Experiment."""
    validator = (ROOT / "schemas/upstream/katib" / PINS["katib"] / "pkg/webhook/v1beta1/experiment/validator/validator.go").read_text()
    kept = re.findall(r"oldInst\.Spec\.(\w+) = instance\.Spec\.\w+", validator)
    assert set(kept) == {"ParallelTrialCount", "MaxTrialCount", "MaxFailedTrialCount"}
    assert "isRestarting && oldInst.IsCompleted() && !experimentutil.IsCompletedExperimentRestartable(oldInst)" in validator
    assert "*instance.Spec.MaxTrialCount <= oldInst.Status.Trials" in validator
    experiment = next(r for r in synth_of("staging").resources if r["type"].endswith(":Experiment"))
    assert synth_of("staging").result.lifecycle[experiment["urn"]] == {"replaceOnChanges": ["spec"], "deleteBeforeReplace": True}
