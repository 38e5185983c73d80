"""Team tenancy and ML workload releases as synthesized."""
from __future__ import annotations

import copy
import math

import pytest

from infra.config import ConfigError
from policies.rules.scheduling import matching_pools, tolerates
from policies.rules.workloads import ENDPOINT_PICKER, pod_spec
from tests.conftest import STACKS, synth_of
from tests.test_compute import logical
from tests.test_config import parse_stack, stack_raw

POD_KINDS = ("Deployment", "Job", "CronJob", "InferenceService")
TAINTS = {
    "nvidia": {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},
    "neuron": {"key": "aws.amazon.com/neuron", "value": "true", "effect": "NoSchedule"},
}


def team_pods(synth) -> list[tuple[str, dict]]:
    """(file, pod spec) of every pod template in a team namespace."""
    teams = {t["namespace"] for t in synth.result.outputs["teams"].values()}
    found = []
    for fname, m in synth.result.manifests.items():
        if m["kind"] in POD_KINDS and m["metadata"]["namespace"] in teams:
            found.append((fname, pod_spec(f"kubernetes:{m['apiVersion']}:{m['kind']}", m)))
    return found


def node_pools(synth) -> list[dict]:
    return [m for m in synth.result.manifests.values() if m["kind"] == "NodePool"]


@pytest.mark.parametrize("stack_name", ["dev", "staging"])
def test_every_accelerator_pod_tolerates_exactly_its_pool_and_is_schedulable(stack_name):
    synth = synth_of(stack_name)
    pods = team_pods(synth)
    assert pods
    for fname, spec in pods:
        pool = spec["nodeSelector"]["ml-platform.io/pool"]
        tolerated = {name for name, taint in TAINTS.items() if tolerates(spec.get("tolerations", []), taint)}
        assert tolerated == ({pool} if pool in TAINTS else set()), fname
        assert logical(matching_pools(spec, node_pools(synth))) == [pool], fname


def test_the_example_services_land_on_the_intended_hardware():
    dev = synth_of("dev").result.manifests["deployment--nlp--sentiment.yaml"]["spec"]["template"]["spec"]
    assert dev["containers"][0]["resources"]["requests"]["aws.amazon.com/neuron"] == "1"
    neuron_pool = synth_of("dev").result.manifests["nodepool--cluster--neuron.yaml"]["spec"]
    assert "inf1.xlarge" in next(r["values"] for r in neuron_pool["template"]["spec"]["requirements"] if r["key"] == "node.kubernetes.io/instance-type")
    staging = synth_of("staging").result.manifests["inferenceservice--nlp--sentiment.yaml"]["spec"]["predictor"]
    assert staging["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert staging["containers"][0]["ports"][0] == {"name": "http", "containerPort": 5000, "protocol": "TCP"}


def test_canary_weights_split_the_route_between_version_services():
    # Staging serves through KServe: the route splits between the versions' predictor Services.
    m = synth_of("staging").result.manifests
    rule = m["httproute--nlp--sentiment.yaml"]["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("sentiment-predictor", 90), ("sentiment-canary-predictor", 10)]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/sentiment"}}]
    assert rule["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    assert m["horizontalpodautoscaler--nlp--sentiment-canary.yaml"]["spec"]["maxReplicas"] == 1  # ceil(4 x 10%)
    canary = m["inferenceservice--nlp--sentiment-canary.yaml"]
    assert canary["spec"]["predictor"]["labels"]["version"] == "canary"
    assert canary["spec"]["predictor"]["containers"][0]["image"].endswith(":1.1.0-cuda")
    assert m["inferenceservice--nlp--sentiment.yaml"]["spec"]["predictor"]["containers"][0]["image"].endswith(":1.0.0-cuda")
    # The same workload on the hand-built path: a Service per version, selected by its version label.
    from components.workloads import route_spec

    [w] = [w for w in parse_stack(stack_raw("staging")).workloads if w.name == "sentiment"]
    parent = {"name": "ml-gateway", "namespace": "istio-ingress"}
    assert [(b["name"], b["weight"]) for b in route_spec(w, parent, ["*"])["rules"][0]["backendRefs"]] == [("sentiment", 90), ("sentiment-canary", 10)]
    dev_rule = synth_of("dev").result.manifests["httproute--nlp--sentiment.yaml"]["spec"]
    assert [(b["name"], b["weight"]) for b in dev_rule["rules"][0]["backendRefs"]] == [("sentiment", 100)]
    assert dev_rule["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ml-gateway", "namespace": "istio-ingress"}]


# The hand-built path (dev); staging's InferenceServices: tests/test_serving.py.
@pytest.mark.parametrize("stack_name", ["dev"])
def test_every_serving_deployment_has_hpa_metrics_a_pdb_and_probes(stack_name):
    m = synth_of(stack_name).result.manifests
    # Serving tracks carry their version; the data-prep consumer (tests/test_streaming.py) is no serving deployment,
    # and LLM engines and their endpoint pickers have their own tests (tests/test_llm_serving.py).
    deployments = [d for d in m.values() if d["kind"] == "Deployment" and d["metadata"]["namespace"] == "nlp"
                   and "version" in d["metadata"]["labels"] and "app" in d["metadata"]["labels"]]
    assert deployments
    for d in deployments:
        name = d["metadata"]["name"]
        hpa = m[f"horizontalpodautoscaler--nlp--{name}.yaml"]["spec"]
        assert hpa["scaleTargetRef"]["name"] == name and hpa["metrics"]
        assert hpa["metrics"][0]["resource"]["target"]["type"] == "Utilization"
        pdb = m[f"poddisruptionbudget--nlp--{name}.yaml"]["spec"]
        assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] == 600
        assert {"readinessProbe", "livenessProbe"} <= set(container)


@pytest.mark.parametrize("stack_name", ["dev", "staging"])
def test_team_pods_are_restricted_and_keep_data_off_empty_dir(stack_name):
    manifests = synth_of(stack_name).result.manifests
    for fname, spec in team_pods(synth_of(stack_name)):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # An InferencePool's endpoint picker watches its pool and pods: the one team pod with an API token.
        labels = manifests[fname]["spec"].get("template", {}).get("metadata", {}).get("labels", {})
        picker = labels.get("app.kubernetes.io/component") == ENDPOINT_PICKER
        assert spec.get("automountServiceAccountToken") is False or picker, fname
        # Tensor-parallel engines share memory through a RAM-backed /dev/shm: scratch, never data.
        shm = {v["name"] for v in spec["volumes"] if (v.get("emptyDir") or {}).get("medium") == "Memory"}
        for c in spec["containers"]:
            ctx = c["securityContext"]
            assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
            assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]
            assert not c["image"].endswith(":latest")
            empty = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v} - shm
            assert empty == {"tmp"} and all(m["mountPath"] == "/tmp" for m in c["volumeMounts"] if m["name"] in empty), fname
            assert all(m["mountPath"] == "/dev/shm" for m in c["volumeMounts"] if m["name"] in shm), fname


def test_serving_reads_its_model_version_from_the_team_store_read_only():
    spec = synth_of("staging").result.manifests["inferenceservice--nlp--sentiment.yaml"]["spec"]["predictor"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}} in spec["volumes"]
    container = spec["containers"][0]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert {"name": "MODEL_DIR", "value": "/models/sentiment-base/1"} in container["env"]
    [wait] = spec["initContainers"]
    assert wait["command"][:10] == ["python", "-m", "modelstore", "wait", "--store", "/models", "--model", "sentiment-base", "--version", "1"]
    assert wait["resources"]["limits"]["memory"] == wait["resources"]["requests"]["memory"]


def test_training_data_and_checkpoints_come_from_efs_claims_and_its_output_goes_to_the_store():
    job = synth_of("dev").result.manifests["job--nlp--sentiment-finetune-1.yaml"]
    spec = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "sentiment-finetune-data"
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == "sentiment-finetune-checkpoints"
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": False}
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert (env["MODEL_STORE"], env["OUTPUT_MODEL"], env["OUTPUT_VERSION"], env["JOB_NAME"]) == ("/models", "sentiment", "ft-1", "nlp/sentiment-finetune-1")
    for name in ("data", "checkpoints"):
        assert synth_of("dev").result.manifests[f"persistentvolumeclaim--nlp--sentiment-finetune-{name}.yaml"]["spec"]["storageClassName"] == "efs-shared"


def test_training_job_and_cron_job():
    job = synth_of("dev").result.manifests["job--nlp--sentiment-finetune-1.yaml"]
    # Not awaited; replaced (the old one first, deleted in the background) when its queue changes.
    assert job["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true", "pulumi.com/deletionPropagationPolicy": "background"}
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (2, 86400, 86400)
    template = spec["template"]
    assert template["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true", "sidecar.istio.io/inject": "false"}
    assert template["spec"]["priorityClassName"] == "ml-training" and template["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env["DATA_DIR"] == "/data" and env["CHECKPOINT_DIR"] == "/checkpoints"
    cron = synth_of("staging").result.manifests["cronjob--nlp--sentiment-finetune.yaml"]["spec"]
    assert cron["schedule"] == "0 2 * * 0" and cron["concurrencyPolicy"] == "Forbid"
    assert cron["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 86400


def test_priority_classes():
    m = synth_of("prod").result.manifests
    serving, training = m["priorityclass--cluster--ml-serving.yaml"], m["priorityclass--cluster--ml-training.yaml"]
    assert serving["value"] > training["value"]
    assert training["preemptionPolicy"] == "Never" and not serving["globalDefault"] and not training["globalDefault"]


@pytest.mark.parametrize("stack_name", STACKS)
def test_team_namespace_quota_limits_network_and_rbac(stack_name):
    synth = synth_of(stack_name)
    m = synth.result.manifests
    team = stack_raw(stack_name)["teams"][0]
    ns = m["namespace--cluster--nlp.yaml"]["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted" and ns["istio-injection"] == "enabled"
    hard = m["resourcequota--nlp--team-quota.yaml"]["spec"]["hard"]
    q = team["quota"]
    # Plus what the team may borrow from the cohort through Kueue (scheduling.borrowingLimitPercent, 25 in staging).
    grown = lambda n: n + math.ceil(n * stack_raw(stack_name).get("scheduling", {}).get("borrowingLimitPercent", 0) / 100)  # noqa: E731
    assert hard["requests.cpu"] == str(grown(q["cpu"])) and hard["requests.memory"] == hard["limits.memory"] == f"{grown(q['memoryGib'])}Gi"
    assert hard["requests.nvidia.com/gpu"] == str(grown(q["nvidiaGpus"])) and hard["requests.aws.amazon.com/neuron"] == str(grown(q["neuronCores"]))
    assert hard["persistentvolumeclaims"] == str(q["pvcs"]) and hard["requests.storage"] == f"{q['storageGib']}Gi"
    limits = m["limitrange--nlp--container-defaults.yaml"]["spec"]["limits"][0]
    assert limits["default"]["memory"] == limits["defaultRequest"]["memory"]
    deny = m["networkpolicy--nlp--default-deny.yaml"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    gateway = m["networkpolicy--nlp--allow-from-gateway.yaml"]["spec"]["ingress"][0]["from"][0]
    assert gateway["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "istio-ingress"}
    dns = m["networkpolicy--nlp--allow-dns.yaml"]["spec"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    binding = m["rolebinding--nlp--team-developer.yaml"]
    assert binding["subjects"] == [{"kind": "Group", "name": "ml-team:nlp", "apiGroup": "rbac.authorization.k8s.io"}]
    assert binding["roleRef"]["kind"] == "Role"
    # Nothing cluster-wide for the team: no ClusterRoleBinding names its group or a service account of its namespace
    # (the platform's own controllers, Kubeflow's among them, have theirs).
    assert not [x for x in m.values() if x["kind"] == "ClusterRoleBinding"
                and any(s["name"].startswith("ml-team:") or s.get("namespace") == "nlp" for s in x.get("subjects") or [])]
    entry = synth.one("aws:eks/accessEntry:AccessEntry", "tenancy-nlp")["inputs"]
    assert entry["principalArn"] == team["iamRoleArn"] and entry["kubernetesGroups"] == ["ml-team:nlp"]
    assert "accessPolicies" not in entry
    vpc_cni = next(a for a in synth.of_type("aws:eks/addon:Addon") if a["inputs"]["addonName"] == "vpc-cni")
    assert vpc_cni["inputs"]["configurationValues"] == '{"enableNetworkPolicy": "true"}'


def test_workload_and_team_outputs():
    outputs = synth_of("staging").result.outputs
    gateway = outputs["gateway"]["url"]
    assert outputs["workloads"]["nlp/sentiment"] == {
        "kind": "serving", "team": "nlp", "namespace": "nlp", "service": "sentiment-predictor", "url": f"{gateway}/sentiment",
        "models": {"stable": "sentiment-base@1", "canary": "sentiment-base@1", "canaryWeight": 10},
    }
    assert outputs["teams"]["nlp"]["serviceAccounts"] == ["nlp-workloads", "sentiment", "sentiment-ddp", "sentiment-finetune"]
    prod = synth_of("prod").result.outputs
    assert prod["workloads"]["nlp/sentiment"]["models"] == {"stable": "sentiment-base@1", "canaryWeight": 0}


def config_error(mutate) -> str:
    raw = copy.deepcopy(stack_raw("staging"))
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["workloads"][0].update(team="vision"), "ml-platform:workloads[0].team 'vision' is not one of the teams: ['nlp']"),
        (lambda r: r["workloads"][0].update(image="registry/sentiment:latest"), "ml-platform:workloads[0].image: \"registry/sentiment:latest\" is not allowed: the tag 'latest' moves"),
        (lambda r: r["workloads"][0].update(image="registry/sentiment"), "expected an image pinned by tag or digest"),
        (lambda r: r["workloads"][0]["canary"].update(weight=0), "ml-platform:workloads[0].canary.weight: 0 is not allowed"),
        (lambda r: r["workloads"][0].update(acceleratorCount=0), "acceleratorCount must be 0 for cpu and at least 1 for nvidia or neuron"),
        (lambda r: r["workloads"][0]["autoscaling"].update(maxReplicas=9), "ml-platform:teams[0].quota.nvidiaGpus 18 is below what team 'nlp' needs at most: workloads[0] (sentiment) 10 pods x 1 + workloads[1] (sentiment-finetune) 1 pods x 1 + workloads[2] (sentiment-ddp) 2 pods x 1 + llm.workloads[0] (assistant) 6 pods x 1 = 19 nvidia accelerators"),
        (lambda r: r["nodePools"]["nvidia"].update(enabled=False), "ml-platform:workloads[0].accelerator 'nvidia' has no enabled node pool"),
        # A 50% canary of 8 replicas may run 4 more pods: with the LLM's 6, 21 GPUs against a quota of 18.
        (lambda r: (r["workloads"][0]["autoscaling"].update(maxReplicas=8), r["workloads"][0]["canary"].update(weight=50)),
         "needs at most: workloads[0] (sentiment) 12 pods x 1 + workloads[1] (sentiment-finetune) 1 pods x 1 + workloads[2] (sentiment-ddp) 2 pods x 1 + llm.workloads[0] (assistant) 6 pods x 1 = 21"),
        (lambda r: r["nodePools"]["cpu"].update(enabled=False), "ml-platform:nodePools.cpu.enabled must stay true"),
        (lambda r: r["workloads"][1].update(kind="inference"), "ml-platform:workloads[1].kind: \"inference\" is not allowed: expected one of serving, training"),
        (lambda r: r["workloads"][1]["data"].update(storageClass="efs-fast"), "volume storageClass 'efs-fast' is not one of ['efs-shared']"),
    ],
)
def test_bad_workload_config_names_the_key(mutate, expected):
    assert expected in config_error(mutate)


def test_metrics_reach_prometheus_without_weakening_mtls():
    """The app's metrics port is named to the sidecar agent, which serves them merged outside mutual TLS
    (tests/test_metric_semantics.py follows the scrape); no Service port or monitor of the workload's own."""
    m = synth_of("dev").result.manifests
    assert "servicemonitor--nlp--sentiment.yaml" not in m
    assert [p["name"] for p in m["service--nlp--sentiment.yaml"]["spec"]["ports"]] == ["http"]
    annotations = m["deployment--nlp--sentiment.yaml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9100", "prometheus.io/path": "/metrics"}
    # KServe's predictor pods carry the same annotations (staging).
    predictor = synth_of("staging").result.manifests["inferenceservice--nlp--sentiment.yaml"]["spec"]["predictor"]
    assert predictor["annotations"] == annotations
    peer = [x for x in m.values() if x["kind"] == "PeerAuthentication"]
    assert [p["spec"] for p in peer] == [{"mtls": {"mode": "STRICT"}}], "no port-level exceptions anywhere"
