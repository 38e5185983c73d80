"""Gang admission: Kueue queues per team that agree with the namespace quota, TrainJobs (on JobSet) for distributed runs,
Volcano as the option."""
from __future__ import annotations

import re

import pytest
import yaml

from components.scheduling import COHORT, DEFAULT_FLAVOR, RUN_QUEUE_POLICY
from infra.config import ConfigError
from infra.config.pins import PINS
from infra.lib import headroom, timing
from infra.lib.conventions import SERVING_PRIORITY, TRAINING_PRIORITY
from infra.lib.gang import LOCAL_QUEUE, PRIORITY_LABEL, QUEUE_LABEL, QUEUE_LABEL_PATH, VOLCANO_QUEUE_ANNOTATION
from infra.synth import synthesize
from policies.rules.base import quantity as k8s_quantity
from tests.conftest import ROOT, STACKS, lean, synth_of
from tests.test_config import error_of, parse_stack, stack_raw

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
TRAINJOB = "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob"
RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime"


def quantity(value: str) -> float:
    return float(value[:-2]) if value.endswith("Gi") else float(value)


def kueue(stack: str) -> dict:
    return synth_of(stack).release("kueue")["inputs"]


def custom(s, kind: str) -> list[dict]:
    return [r for r in s.resources if r["type"].startswith("kubernetes:kueue.x-k8s.io/") and r["type"].endswith(f":{kind}")]


@pytest.mark.parametrize("stack", STACKS)
def test_kueue_runs_the_released_image_and_gang_admits_with_a_timeout_longer_than_a_node_launch(stack):
    values = kueue(stack)["values"]
    image = values["controllerManager"]["manager"]["image"]
    assert (image["repository"], image["tag"]) == ("registry.k8s.io/kueue/kueue", f"v{kueue(stack)['version']}")
    config = yaml.safe_load(values["managerConfig"]["controllerManagerConfigYaml"])
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert {"batch/job", "jobset.x-k8s.io/jobset", "trainer.kubeflow.org/trainjob"} <= set(config["integrations"]["frameworks"])
    minutes = int(config["waitForPodsReady"]["timeout"].removesuffix("m"))
    slowest_start = max(timing.NODE_LAUNCH[p] + timing.IMAGE_PULL[p] for p in timing.NODE_LAUNCH)
    assert minutes * 60 > slowest_start
    teams = [t.name for t in parse_stack(stack_raw(stack)).teams]
    assert config["manageJobsWithoutQueueName"] is False
    assert config["managedJobsNamespaceSelector"]["matchExpressions"][0]["values"] == sorted(teams)
    assert ("pod" in config["integrations"]["frameworks"]) == parse_stack(stack_raw(stack)).kubeflow.pipelines_on


@pytest.mark.parametrize("stack", STACKS)
def test_each_accelerator_flavor_is_its_pool_labels_and_taint(stack):
    s = synth_of(stack)
    # A pool's static NodePool has the pool's labels and taint: its warm nodes are the pool's flavor too.
    pools = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"]["template"] for r in s.of_type(NODE_POOL) if "replicas" not in r["inputs"]["spec"]}
    flavors = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in custom(s, "ResourceFlavor")}
    assert flavors.pop(DEFAULT_FLAVOR) == {}
    assert set(flavors) == set(pools) - {"cpu"}
    for name, spec in flavors.items():
        # The pool's own labels; its nodes may carry more (an EFA pool's the EFA device plugin's).
        assert spec["nodeLabels"].items() <= pools[name]["metadata"]["labels"].items() and spec["nodeLabels"]["ml-platform.io/pool"] == name
        assert spec["nodeTaints"] == pools[name]["spec"]["taints"]


@pytest.mark.parametrize("stack", STACKS)
def test_a_team_gets_no_more_through_kueue_than_its_resource_quota_leaves(stack):
    """Kueue admits at most nominal quota plus borrowing limit: the namespace's ResourceQuota less what runs outside
    the queue, exactly (none of it where serving alone may fill it)."""
    s = synth_of(stack)
    cfg = parse_stack(stack_raw(stack))
    quotas = {r["inputs"]["metadata"]["namespace"]: r["inputs"]["spec"]["hard"] for r in s.of_type("kubernetes:core/v1:ResourceQuota")}
    queues = custom(s, "ClusterQueue")
    assert {q["inputs"]["metadata"]["name"] for q in queues} == {t.name for t in cfg.teams}
    for queue in queues:
        spec, team = queue["inputs"]["spec"], queue["inputs"]["metadata"]["name"]
        assert spec["cohortName"] == COHORT
        assert spec["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": team}}
        outside = headroom.outside_queue(cfg, next(t for t in cfg.teams if t.name == team))
        unit = {"cpu": 1000, "memory": 1024}
        admitted = {}
        for group in spec["resourceGroups"]:
            for flavor in group["flavors"]:
                for r in flavor["resources"]:
                    admitted[r["name"]] = admitted.get(r["name"], 0) + k8s_quantity(r["nominalQuota"]) + k8s_quantity(r.get("borrowingLimit", "0"))
        assert admitted == pytest.approx({res: max(0, k8s_quantity(quotas[team][f"requests.{res}"]) - outside[res] / unit.get(res, 1)) for res in admitted})
        assert {"cpu", "memory"} <= set(admitted) <= {"cpu", "memory", "nvidia.com/gpu", "aws.amazon.com/neuron"}


def test_staging_lets_teams_borrow_a_quarter_and_their_quota_grows_to_match(staging):
    [queue] = custom(staging, "ClusterQueue")
    cpu = queue["inputs"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    cfg = parse_stack(stack_raw("staging"))
    team = cfg.teams[0]
    own = team.quota.cpu * 1000 - headroom.outside_queue(cfg, team)["cpu"]
    assert (cpu["nominalQuota"], cpu["borrowingLimit"]) == (headroom.quantity("cpu", own), str(team.quota.cpu // 4))


@pytest.mark.parametrize("stack", STACKS)
def test_every_team_has_a_local_queue_after_its_cluster_queue_and_the_controller(stack):
    s = synth_of(stack)
    controller = s.release("kueue")
    for queue in custom(s, "LocalQueue"):
        team = queue["inputs"]["metadata"]["namespace"]
        assert queue["inputs"]["metadata"]["name"] == LOCAL_QUEUE and queue["inputs"]["spec"] == {"clusterQueue": team}
        assert s.depends_on(queue, next(q for q in custom(s, "ClusterQueue") if q["inputs"]["metadata"]["name"] == team))
        assert s.depends_on(queue, controller)
    for resource in custom(s, "ClusterQueue") + custom(s, "ResourceFlavor") + custom(s, "WorkloadPriorityClass"):
        assert s.depends_on(resource, controller)


def test_workload_priorities_mirror_the_priority_classes(prod):
    classes = {r["inputs"]["metadata"]["name"]: r["inputs"]["value"] for r in prod.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")}
    priorities = {r["inputs"]["metadata"]["name"]: r["inputs"]["value"] for r in custom(prod, "WorkloadPriorityClass")}
    assert priorities == {SERVING_PRIORITY: classes[SERVING_PRIORITY], TRAINING_PRIORITY: classes[TRAINING_PRIORITY]}
    assert priorities[SERVING_PRIORITY] > priorities[TRAINING_PRIORITY]


@pytest.mark.parametrize("stack", STACKS)
def test_every_job_of_a_team_namespace_is_submitted_suspended_through_its_team_queue(stack):
    """Kueue manages every Job of a team namespace: one without its queue would stay suspended forever."""
    s = synth_of(stack)
    teams = {t.name for t in parse_stack(stack_raw(stack)).teams}
    runs = [r for r in s.of_type("kubernetes:batch/v1:Job") + s.of_type(TRAINJOB)
            if r["inputs"]["metadata"]["namespace"] in teams]
    for cron in s.of_type("kubernetes:batch/v1:CronJob"):
        template = cron["inputs"]["spec"]["jobTemplate"]
        assert template["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE and template["spec"]["suspend"] is True
    assert runs
    for run in runs:
        lifecycle = run["inputs"]["metadata"]["labels"].get("app.kubernetes.io/component") == "model-lifecycle"
        # The model lifecycle (bootstrap, compile) goes first: serving waits for it, training does not.
        assert run["inputs"]["metadata"]["labels"][PRIORITY_LABEL] == (SERVING_PRIORITY if lifecycle else TRAINING_PRIORITY)
        assert run["inputs"]["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE
        assert run["inputs"]["spec"]["suspend"] is True
        queue = next(q for q in custom(s, "LocalQueue") if q["inputs"]["metadata"]["namespace"] == run["inputs"]["metadata"]["namespace"])
        assert s.depends_on(run, queue)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.setdefault("scheduling", {}).update(waitForPodsReadyMinutes=5), "ml-platform:scheduling.waitForPodsReadyMinutes: 5 is not allowed"),
        (lambda r: r.setdefault("scheduling", {}).update(gang="yunikorn"), "ml-platform:scheduling.gang: \"yunikorn\" is not allowed"),
    ],
)
def test_bad_scheduling_config_is_refused(mutate, expected):
    assert expected in error_of(mutate)


def test_a_scheduled_run_cannot_be_distributed():
    raw = stack_raw("staging")
    ddp = next(w for w in raw["workloads"] if w.get("workers", 1) > 1)
    ddp["schedule"] = "@daily"
    ddp.pop("output")
    with pytest.raises(Exception) as exc:
        parse_stack(raw)
    assert "workers > 1 with a schedule" in str(exc.value)


def test_a_distributed_run_must_fit_the_team_quota_in_accelerators():
    raw = stack_raw("staging")
    ddp = next(w for w in raw["workloads"] if w.get("workers", 1) > 1)
    ddp["workers"] = 9
    with pytest.raises(Exception) as exc:
        parse_stack(raw)
    # Both checks speak, in one report: the team's quota summed over its workloads, and the queue's share of it.
    assert "workloads[2] (sentiment-ddp) 9 pods x 1 + llm.workloads[0] (assistant) 6 pods x 1 = 20 nvidia accelerators" in str(exc.value)
    assert "workloads[2] needs 9 nvidia.com/gpu at once but the queue of team 'nlp' has 2" in str(exc.value)


# Volcano, the option: synthesized once with gang: volcano.


@pytest.fixture(scope="module")
def volcano(tmp_path_factory):
    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text()
    text = text.replace("    borrowingLimitPercent: 25\n", "    borrowingLimitPercent: 25\n    gang: volcano\n")
    doc = yaml.safe_load(text)
    lean(doc["config"], llm=True)
    path = tmp_path_factory.mktemp("volcano") / "Pulumi.staging.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = synthesize("staging", path)
    assert result.mandatory_violations == []
    return result


def test_kueue_waits_for_the_monitoring_crds_its_chart_uses(prod):
    assert kueue("prod")["values"]["enablePrometheus"] is True
    assert prod.depends_on(prod.release("kueue"), prod.release("kube-prometheus-stack"))


def test_volcano_runs_in_a_baseline_namespace(volcano):
    """Its chart's containers add DAC_OVERRIDE, which the restricted profile refuses."""
    [ns] = [r for r in volcano.resources if r["type"] == "kubernetes:core/v1:Namespace" and r["inputs"]["metadata"]["name"] == "volcano-system"]
    assert ns["inputs"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


def test_volcano_replaces_kueue_with_a_queue_per_team_at_the_team_quota(volcano):
    types = {r["type"] for r in volcano.resources}
    assert not any(t.startswith("kubernetes:kueue.x-k8s.io/") for t in types)
    releases = {r["inputs"]["name"] for r in volcano.resources if r["type"] == "kubernetes:helm.sh/v3:Release"}
    assert {"volcano", "jobset"} <= releases and "kueue" not in releases
    [queue] = [r for r in volcano.resources if r["type"] == "kubernetes:scheduling.volcano.sh/v1beta1:Queue"]
    cfg = parse_stack(stack_raw("staging"))
    team, outside = cfg.teams[0], headroom.outside_queue(cfg, cfg.teams[0])
    # As Kueue's: the quota less what runs outside the queue, and what the team may borrow on top.
    assert queue["inputs"]["spec"]["deserved"]["nvidia.com/gpu"] == str(team.quota.nvidia_gpus - outside["nvidia.com/gpu"])
    assert queue["inputs"]["spec"]["capability"]["cpu"] == headroom.quantity("cpu", (team.quota.cpu + team.quota.cpu // 4) * 1000 - outside["cpu"])


def test_volcano_gangs_a_distributed_run_through_its_runtimes_pod_group(volcano):
    """The Trainer makes the PodGroup of all the TrainJob's nodes, in the queue its annotation names."""
    [trainjob] = [r for r in volcano.resources if r["type"] == TRAINJOB]
    runtime = next(r for r in volcano.resources if r["type"] == RUNTIME and r["inputs"]["metadata"]["name"] == trainjob["inputs"]["spec"]["runtimeRef"]["name"])
    assert runtime["inputs"]["spec"]["podGroupPolicy"] == {"volcano": {}}
    pod = runtime["inputs"]["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["schedulerName"] == "volcano"
    assert trainjob["inputs"]["metadata"]["annotations"][VOLCANO_QUEUE_ANNOTATION] == "nlp"
    assert "suspend" not in trainjob["inputs"]["spec"]


def test_each_team_is_told_what_its_runs_carry_to_reach_their_queue(staging, volcano):
    import jsonschema

    from infra import contract

    assert staging.result.outputs["teams"]["nlp"]["queue"] == {
        "gang": "kueue", "name": LOCAL_QUEUE, "labels": {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: TRAINING_PRIORITY}, "podAnnotations": {}}
    assert volcano.outputs["teams"]["nlp"]["queue"] == {
        "gang": "volcano", "name": "nlp", "labels": {}, "podAnnotations": {VOLCANO_QUEUE_ANNOTATION: "nlp"}, "schedulerName": "volcano"}
    jsonschema.Draft202012Validator(contract.load()).validate(volcano.outputs)
    # Volcano has no queue label to require.
    assert not any(r["type"].endswith(":ValidatingAdmissionPolicy") and r["inputs"]["metadata"]["name"] == RUN_QUEUE_POLICY for r in volcano.resources)


# The policy rules that hold any stack to the same.


def _violations(records, rule_name):
    from infra.offline.policy_check import check
    from policies.rules import RULES

    rule = next(r for r in RULES if r.name == rule_name)
    return [v["message"] for v in check(records, "staging", rules=[rule])["violations"]]


def test_a_team_job_without_its_queue_fails_training_queued(staging):
    import copy

    records = copy.deepcopy(staging.resources)
    assert _violations(records, "training-queued") == []
    job = next(r for r in records if r["type"] == "kubernetes:batch/v1:Job" and r["outputs"]["metadata"]["namespace"] == "nlp")
    # No label: Kueue would not manage it, and the cluster's admission policy refuses it.
    del job["outputs"]["metadata"]["labels"][QUEUE_LABEL]
    assert _violations(records, "training-queued") == ["Job in team namespace 'nlp' names no LocalQueue: the cluster refuses it"]
    job["outputs"]["metadata"]["labels"][QUEUE_LABEL] = "training"
    trainjob = next(r for r in records if r["type"] == TRAINJOB)
    trainjob["outputs"]["spec"]["suspend"] = False
    assert sorted(_violations(records, "training-queued")) == [
        f"Job in team namespace 'nlp' does not name its LocalQueue {LOCAL_QUEUE!r}",
        "TrainJob in team namespace 'nlp' is not created suspended: it would start before Kueue admits it",
    ]


def test_a_cluster_queue_above_the_namespace_quota_fails_queue_within_team_quota(staging):
    import copy

    records = copy.deepcopy(staging.resources)
    assert _violations(records, "queue-within-team-quota") == []
    queue = next(r for r in records if r["type"].endswith(":ClusterQueue"))
    gpu = next(g for g in queue["outputs"]["spec"]["resourceGroups"] if g["coveredResources"] == ["nvidia.com/gpu"])
    gpu["flavors"][0]["resources"][0]["borrowingLimit"] = "8"
    [message] = _violations(records, "queue-within-team-quota")
    assert message == "ClusterQueue 'nlp' admits nvidia.com/gpu 10 beside 16 of pods outside the queue but namespace 'nlp' allows 23"


def _upstream_kueue(path: str) -> str:
    return (ROOT / "schemas/upstream/kueue" / PINS["kueue"] / "pkg/controller" / path).read_text()


def test_no_pod_of_a_team_namespace_is_gated_unless_it_names_the_queue():
    """Kueue's pod webhook (0.19) gives a pod that names no queue the LocalQueue named DefaultLocalQueueName when one
    exists, then gates every pod that names a queue, or every pod at all under manageJobsWithoutQueueName: the team's
    LocalQueue has another name and Kueue manages only what names it, so serving pods start as they are."""
    [default] = re.findall(r'DefaultLocalQueueName\s+kueue\.LocalQueueName\s*=\s*"([^"]+)"', _upstream_kueue("constants/constants.go"))
    webhook = _upstream_kueue("jobs/pod/pod_webhook.go")
    defaulting = webhook.split("// Local queue defaulting", 1)[1].split("if suspend {", 1)[0]
    assert 'QueueNameForObject(pod.Object()) == ""' in defaulting and "DefaultLocalQueueExist(pod.pod.GetNamespace())" in defaulting
    assert 'suspend = jobframework.QueueNameForObject(pod.Object()) != "" || w.manageJobsWithoutQueueName' in defaulting
    assert LOCAL_QUEUE != default
    for stack in STACKS:
        s = synth_of(stack)
        config = yaml.safe_load(s.release("kueue")["inputs"]["values"]["managerConfig"]["controllerManagerConfigYaml"])
        assert config["manageJobsWithoutQueueName"] is False
        managed = set(config["managedJobsNamespaceSelector"]["matchExpressions"][0]["values"])
        queues = {q["inputs"]["metadata"]["namespace"]: q["inputs"]["metadata"]["name"] for q in custom(s, "LocalQueue")}
        assert queues == {team: LOCAL_QUEUE for team in managed}, stack


def test_kueue_gates_pods_only_in_team_namespaces_and_only_with_pipelines():
    """With the `pod` integration on, the chart's pod webhook fails closed: it sees only the team namespaces."""
    for stack in STACKS:
        s = synth_of(stack)
        [hooks] = [r["inputs"]["webhooks"] for r in s.result.rendered
                   if r["chartRendered"]["release"] == "kueue" and r["type"].endswith(":MutatingWebhookConfiguration")]
        [pod_hook] = [h for h in hooks if h["name"] == "mpod.kb.io"]
        teams = sorted(t.name for t in parse_stack(stack_raw(stack)).teams)
        assert pod_hook["namespaceSelector"] == {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": teams}]}
        assert pod_hook["failurePolicy"] == ("Fail" if parse_stack(stack_raw(stack)).kubeflow.pipelines_on else "Ignore"), stack


def _admits(policy: dict, obj: dict) -> bool:
    """The policy's CEL, evaluated as the API server does for a CREATE: skipped unless every match condition holds."""
    import celpy

    env = celpy.Environment()
    activation = celpy.json_to_cel({"object": obj})
    holds = lambda expression: bool(env.program(env.compile(expression)).evaluate(activation))  # noqa: E731
    if not all(holds(c["expression"]) for c in policy["matchConditions"]):
        return True
    return all(holds(v["expression"]) for v in policy["validations"])


def test_a_run_that_names_no_queue_is_refused_in_a_team_namespace():
    s = synth_of("staging")
    policy = s.one("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy")["inputs"]
    binding = s.one("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding")["inputs"]
    spec = policy["spec"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] and binding["spec"]["validationActions"] == ["Deny"]
    teams = sorted(t.name for t in parse_stack(stack_raw("staging")).teams)
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": teams}]
    assert spec["failurePolicy"] == "Fail"
    assert {(r["apiGroups"][0], r["resources"][0]) for r in spec["matchConstraints"]["resourceRules"]} == {
        ("batch", "jobs"), ("jobset.x-k8s.io", "jobsets"), ("trainer.kubeflow.org", "trainjobs")}
    assert all(r["operations"] == ["CREATE"] for r in spec["matchConstraints"]["resourceRules"])
    assert LOCAL_QUEUE in spec["validations"][0]["message"]

    def run(labels=None, owner=None) -> dict:
        meta: dict = {"name": "r", "namespace": teams[0]}
        if labels is not None:
            meta["labels"] = labels
        if owner:
            meta["ownerReferences"] = [{"apiVersion": owner[0], "kind": owner[1], "name": "p", "uid": "u"}]
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}

    assert _admits(spec, run({QUEUE_LABEL: LOCAL_QUEUE}))
    assert not _admits(spec, run())
    assert not _admits(spec, run({"app": "x"}))
    assert not _admits(spec, run({QUEUE_LABEL: ""}))
    # A CronJob's Job carries its template's labels, and is judged as any Job.
    assert not _admits(spec, run({"app": "x"}, ("batch/v1", "CronJob")))
    assert _admits(spec, run({}, ("jobset.x-k8s.io/v1alpha2", "JobSet")))
    assert _admits(spec, run({}, ("trainer.kubeflow.org/v1alpha1", "TrainJob")))
    assert not _admits(spec, run({}, ("example.com/v1", "JobSet")))
    # The team's runs wait for their queue, and their queue for the policy's binding.
    binding_urn = s.one("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding")["urn"]
    assert all(binding_urn in q["dependencies"] for q in custom(s, "LocalQueue"))


def test_a_run_submitted_to_another_queue_is_replaced_not_updated():
    """Kueue refuses to change an admitted run's queue label: a run whose queue changes is replaced, the old one
    deleted first and, for a run created with these options, in the background, so the new one gets its name (a run
    created before them is deleted as its old state says: docs/operators/observability-notes.md)."""
    for stack in STACKS:
        s = synth_of(stack)
        runs = [r for r in s.resources if r["type"] in ("kubernetes:batch/v1:Job", TRAINJOB) and QUEUE_LABEL in r["inputs"]["metadata"].get("labels", {})]
        assert runs, stack
        for run in runs:
            assert s.result.lifecycle[run["urn"]]["replaceOnChanges"] == [QUEUE_LABEL_PATH], run["name"]
            assert s.result.lifecycle[run["urn"]]["deleteBeforeReplace"] is True
            assert run["inputs"]["metadata"]["annotations"]["pulumi.com/deletionPropagationPolicy"] == "background"
    immutable = _upstream_kueue("jobframework/validation.go").split("func validateUpdateForQueueName(", 1)[1].split("\n}\n", 1)[0]
    assert "if !newJob.IsSuspended()" in immutable and "ValidateImmutableField(QueueName(newJob), QueueName(oldJob), queueNameLabelPath)" in immutable


def test_pipeline_steps_name_the_team_queue():
    """Argo merges the controller's workflow defaults into each run (util.MergeTo): every step's pod names the queue."""
    s = synth_of("staging")
    [config] = [r["inputs"] for r in s.resources if r["type"] == "kubernetes:core/v1:ConfigMap"
                and r["inputs"]["metadata"]["name"] == "workflow-controller-configmap"]
    defaults = yaml.safe_load(config["data"]["workflowDefaults"])
    assert defaults["spec"]["podMetadata"]["labels"] == {QUEUE_LABEL: LOCAL_QUEUE, PRIORITY_LABEL: TRAINING_PRIORITY}


def pod_requests(spec: dict, sidecar: dict) -> dict[str, float]:
    """What the ResourceQuota charges a pod: the larger of its containers' sum and any init container, with the
    sidecar the injector adds."""
    def of(container: dict) -> dict[str, float]:
        r = container.get("resources", {}).get("requests", {})
        return {k: k8s_quantity(v) for k, v in r.items()}
    total: dict[str, float] = {}
    for c in [*spec["containers"], sidecar]:
        for k, v in of(c).items():
            total[k] = total.get(k, 0) + v
    for c in spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, 0), v)
    return total


@pytest.mark.parametrize("stack", STACKS)
def test_what_kueue_admits_and_what_runs_outside_it_fit_the_namespace_quota_together(stack):
    """Serving pods at their maximum (HPA), one rollout pod per Deployment, each with its sidecar (Istio's values),
    plus the most the team's ClusterQueue admits, never exceed the team's ResourceQuota."""
    s = synth_of(stack)
    m = s.result.manifests
    proxy = s.release("istiod")["inputs"]["values"]["global"]["proxy"]["resources"]
    assert (k8s_quantity(proxy["requests"]["cpu"]) * 1000, k8s_quantity(proxy["requests"]["memory"]) * 1024) == (headroom.SIDECAR_CPU_MILLI, headroom.SIDECAR_MEMORY_MIB)
    sidecar = {"resources": proxy}
    for team in parse_stack(stack_raw(stack)).teams:
        ns = team.name
        hard = m[f"resourcequota--{ns}--team-quota.yaml"]["spec"]["hard"]
        hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"] for h in m.values() if h["kind"] == "HorizontalPodAutoscaler" and h["metadata"]["namespace"] == ns}
        outside: dict[str, float] = {}
        # Deployments, and on the KServe path the Deployment KServe creates for each predictor (<name>-predictor).
        serving = [(d["metadata"]["name"], d["spec"].get("replicas", 1), d["spec"]["strategy"], d["spec"]["template"]["spec"])
                   for d in m.values() if d["kind"] == "Deployment" and d["metadata"]["namespace"] == ns]
        serving += [(f"{i['metadata']['name']}-predictor", i["spec"]["predictor"]["minReplicas"], i["spec"]["predictor"]["deploymentStrategy"], i["spec"]["predictor"])
                    for i in m.values() if i["kind"] == "InferenceService" and i["metadata"]["namespace"] == ns]
        for name, replicas, strategy, spec in serving:
            # A Recreate Deployment (an endpoint picker) is counted with a surge pod too, as the headroom does.
            pods = hpas.get(name, replicas) + strategy.get("rollingUpdate", {}).get("maxSurge", 1)
            for k, v in pod_requests(spec, sidecar).items():
                outside[k] = outside.get(k, 0) + pods * v
        # Multi-node LLM replicas: a group of `size` pods (the leader and its workers) per replica.
        for g in (g for g in m.values() if g["kind"] == "LeaderWorkerSet" and g["metadata"]["namespace"] == ns):
            groups = hpas.get(g["metadata"]["name"], g["spec"]["replicas"]) + g["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"]
            template = g["spec"]["leaderWorkerTemplate"]
            members = [(template["leaderTemplate"], 1), (template["workerTemplate"], template["size"] - 1)]
            for pod, count in members:
                for k, v in pod_requests(pod["spec"], sidecar).items():
                    outside[k] = outside.get(k, 0) + groups * count * v
        [queue] = [q for q in m.values() if q["kind"] == "ClusterQueue" and q["metadata"]["name"] == ns]
        for group in queue["spec"]["resourceGroups"]:
            for flavor in group["flavors"]:
                for r in flavor["resources"]:
                    admitted = k8s_quantity(r["nominalQuota"]) + k8s_quantity(r.get("borrowingLimit", 0))
                    # Where serving alone may fill the quota, Kueue admits none of it.
                    room = max(0.0, k8s_quantity(hard[f"requests.{r['name']}"]) - outside.get(r["name"], 0))
                    assert admitted <= room + 1e-9, (stack, ns, r["name"])
        assert outside.get("cpu", 0) > 0 or stack == "dev" or not hpas


def test_a_training_run_larger_than_what_serving_leaves_is_refused():
    """staging's serving takes up to 6 of the team's 8 GPUs at its peak; its two-worker run needs the other 2."""
    raw = stack_raw("staging")
    raw["workloads"][0]["autoscaling"]["maxReplicas"] = 4
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "workloads[2] needs 2 nvidia.com/gpu at once but the queue of team 'nlp' has 1 of it (teams[0].quota.nvidiaGpus less" in str(exc.value)


def test_the_team_reserves_room_for_its_own_pods_outside_the_queue():
    raw = stack_raw("staging")
    raw["teams"][0]["quota"]["outsideQueue"] = {"cpu": 4, "memoryGib": 8}
    cfg, base = parse_stack(raw), parse_stack(stack_raw("staging"))
    before, after = headroom.queue_quota(base, base.teams[0]), headroom.queue_quota(cfg, cfg.teams[0])
    assert (before["cpu"] - after["cpu"], before["memory"] - after["memory"]) == (4000, 8192)


def test_a_neuron_compile_job_needs_room_in_the_queue_too():
    """dev serves on 1 NeuronCore per pod: at 3 pods and a rollout pod it holds all 4, and Kueue (which admits the
    compile Job the serving pods wait for) would have none."""
    raw = stack_raw("dev")
    raw["workloads"][0]["autoscaling"]["maxReplicas"] = 3
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "workloads[0]'s Neuron compile Job needs 1 aws.amazon.com/neuron at once but the queue of team 'nlp' has 0" in str(exc.value)
