"""The app team's program under the mock engine, reading the outputs of a synthesized platform stack."""
from __future__ import annotations

import asyncio
import json
import os
import runpy
from pathlib import Path

import pulumi
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import rpc

from tests.conftest import STACKS, synth_of
from tests.schemas import validate

HERE = Path(__file__).resolve().parent


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers the StackReference with a synthesized platform's outputs; records everything else."""

    def __init__(self, platform_outputs: dict):
        self.platform_outputs = platform_outputs
        self.created: list[tuple[str, str, dict]] = []

    def new_resource(self, args):
        if args.typ == "pulumi:pulumi:StackReference":
            return args.name, {"name": args.name, "outputs": self.platform_outputs, "secretOutputNames": ["kubeconfig"]}
        self.created.append((args.typ, args.name, args.inputs))
        return f"{args.name}-id", args.inputs

    def call(self, args):
        return {}


def run_app_team(platform_outputs: dict) -> PlatformMocks:
    mocks = PlatformMocks(platform_outputs)
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="ml-app-team", stack="staging", preview=False)
    config = {
        "ml-app-team:platformStack": "acme/ml-platform/staging",
        "ml-app-team:team": "nlp",
        "ml-app-team:name": "toxicity",
        "ml-app-team:image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/toxicity-service:2.3.1",
        "ml-app-team:path": "/toxicity",
    }
    pulumi.runtime.set_all_config(config)
    saved = os.getcwd()

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(HERE), run_name="__main__")

    try:
        os.chdir(HERE)
        program()
    finally:
        os.chdir(saved)
    return mocks


def nulls(value, path: str = "") -> list[str]:
    """Where a value carries a null, at any depth."""
    if value is None:
        return [path or "/"]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in nulls(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in nulls(v, f"{path}/{i}")]
    return []


def as_stack_reference_returns(outputs: dict) -> dict:
    """The outputs after the SDK's own round trip: serialized to the engine's protobuf Struct, then deserialized."""
    loop = asyncio.new_event_loop()  # not the current loop, which the mock engine's runs own
    try:
        struct = loop.run_until_complete(rpc.serialize_properties(outputs, {}))
    finally:
        loop.close()
    return rpc.deserialize_properties(struct_pb2.Struct.FromString(struct.SerializeToString()))


@pytest.fixture(scope="module", params=STACKS)
def synthesized(request):
    return synth_of(request.param)


@pytest.fixture(scope="module")
def platform(synthesized):
    return as_stack_reference_returns({**synthesized.result.outputs, "kubeconfig": json.dumps({"apiVersion": "v1", "kind": "Config"})})


def test_no_stack_output_carries_a_null(synthesized):
    assert nulls(synthesized.result.outputs) == []


def test_the_round_trip_is_lossless_for_the_contract(synthesized, platform):
    assert platform == {**synthesized.result.outputs, "kubeconfig": platform["kubeconfig"]}


def test_the_round_trip_drops_nulls_so_the_guard_is_needed():
    assert as_stack_reference_returns({"models": {"stable": "m@1", "canary": None}}) == {"models": {"stable": "m@1"}}


def manifests(mocks: PlatformMocks) -> dict[str, dict]:
    return {i["kind"]: i for t, _, i in mocks.created if t.startswith("kubernetes:") and "kind" in i}


def test_service_lands_in_the_team_namespace_on_the_gpu_pool(platform):
    m = manifests(run_app_team(platform))
    pod = m["Deployment"]["spec"]["template"]["spec"]
    pool = platform["nodePools"]["nvidia"]
    assert m["Deployment"]["metadata"]["namespace"] == platform["teams"]["nlp"]["namespace"]
    assert pod["nodeSelector"] == pool["nodeSelector"] and pod["tolerations"] == [pool["toleration"]]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["priorityClassName"] == platform["scheduling"]["servingPriorityClass"]


def test_route_attaches_to_the_platform_gateway(platform):
    from model_service import ROUTE_API_VERSION

    mocks = run_app_team(platform)
    assert ROUTE_API_VERSION == platform["gateway"]["attach"]["apiVersion"]
    assert [t for t, _, i in mocks.created if i.get("kind") == "HTTPRoute"] == [f"kubernetes:{ROUTE_API_VERSION}:HTTPRoute"]
    route = manifests(mocks)["HTTPRoute"]["spec"]
    assert route["parentRefs"] == platform["gateway"]["attach"]["parentRefs"]
    assert route["rules"][0]["backendRefs"] == [{"name": "toxicity", "port": 80}]
    assert route["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/toxicity"}}]


def test_it_shows_the_platforms_endpoints_with_their_model_versions(platform):
    from model_service import describe, model_endpoints

    endpoints = model_endpoints(platform["workloads"])
    assert list(endpoints) == ["nlp/sentiment"]
    # Only staging runs a canary; on dev and prod the key is absent.
    canary = ", canary sentiment-base@1 at 10%" if platform["environment"] == "staging" else ""
    assert describe(endpoints) == [f"nlp/sentiment: {platform['gateway']['url']}/sentiment serves sentiment-base@1{canary}"]


# Rules about the platform's own graph (its one provider, its CRD releases, its namespaces, its budget, the order of its
# awaits: the pools exist before an app team deploys) do not apply to another program.
PLATFORM_GRAPH_RULES = {
    "kubernetes-single-provider", "custom-resource-after-its-crd", "team-namespace-guardrails", "cost-within-budget", "await-prerequisites-in-graph",
}


def test_everything_it_renders_validates_and_passes_the_platform_rules(platform, synthesized):
    from infra.offline.policy_check import check

    created = run_app_team(platform).created
    # The platform's pools decide whether the GPU service can be scheduled at all.
    records = [r for r in synthesized.result.resources if r["type"] == "kubernetes:karpenter.sh/v1:NodePool"]
    for typ, name, inputs in created:
        if typ.startswith("kubernetes:") and "kind" in inputs:
            validate(inputs)
        records.append({"urn": f"urn:pulumi:staging::ml-app-team::{typ}::{name}", "type": typ, "name": name, "parent": None,
                        "custom": True, "provider": None, "dependencies": [], "inputs": inputs, "outputs": inputs})
    assert [v for v in check(records, "prod")["violations"] if v["policy"] not in PLATFORM_GRAPH_RULES] == []


def test_refuses_an_incompatible_platform_contract(platform):
    with pytest.raises(Exception, match="schemaVersion 3.x, the platform publishes 4.0.0"):
        run_app_team({**platform, "schemaVersion": "4.0.0"})
