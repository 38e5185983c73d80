"""The modelled cold start of a serving pod per pool: the artefact, its sums, and what moves it."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from infra.lib import timing
from infra.offline import cold_start
from infra.synth import _summary, write_artifacts
from policies.rules.cost import BUDGET
from tests.conftest import synth_of

READ = {cold_start.NODE_POOL, cold_start.NODE_CLASS, cold_start.DEPLOYMENT, cold_start.FILE_SYSTEM, BUDGET}


def records_of(stack: str) -> list[dict]:
    """Copies of the records the model reads, to change one."""
    return [copy.deepcopy(r) for r in synth_of(stack).resources if r["type"] in READ]


def test_every_dynamic_pool_has_a_figure_that_adds_up(stack):
    cold = stack.result.cold_start
    pools = {m["metadata"]["name"] for m in stack.result.manifests.values() if m["kind"] == "NodePool" and "replicas" not in m["spec"]}
    assert set(cold["pools"]) == pools
    for name, p in cold["pools"].items():
        assert p["nodeLaunchSeconds"] == timing.NODE_LAUNCH[name]
        assert p["readySeconds"] == p["nodeLaunchSeconds"] + p["imagePullSeconds"] + p.get("weightsSeconds", 0)
        expected_pull = round(timing.IMAGE_PULL[name] * (1 - cold_start.PARALLEL_PULL_GAIN)) if p["parallelPull"] else timing.IMAGE_PULL[name]
        assert p["imagePullSeconds"] == expected_pull
    # The accelerator pools turn the parallel pull on and all their types qualify; the cpu pool does not.
    assert cold["pools"]["nvidia"]["parallelPull"] and cold["pools"]["neuron"]["parallelPull"]
    assert not cold["pools"]["cpu"]["parallelPull"]


def test_weights_come_from_the_serving_pods_memory_and_the_stores_throughput():
    prod = synth_of("prod").result.cold_start["pools"]
    # prod's sentiment serves on cpu with 4 GiB: read at EFS Elastic's 1,500 MiB/s per client.
    assert prod["cpu"]["workload"] == "nlp/sentiment" and prod["cpu"]["weightsGib"] == 4
    assert prod["cpu"]["weightsSeconds"] == round(4 * 1024 / 1500)
    assert "weightsSeconds" not in prod["nvidia"]
    staging = synth_of("staging").result.cold_start["pools"]["nvidia"]
    # staging's largest GPU serving pod is the LLM engine's (12 GiB of host memory).
    assert staging["workload"] == "nlp/assistant" and staging["weightsGib"] == 12


def test_a_pool_with_warm_nodes_also_states_the_warm_path():
    nvidia = synth_of("staging").result.cold_start["pools"]["nvidia"]
    assert nvidia["warmNodes"] == 1
    assert nvidia["warmReadySeconds"] == nvidia["imagePullSeconds"] + nvidia["weightsSeconds"]
    assert "warmNodes" not in synth_of("prod").result.cold_start["pools"]["nvidia"]


def test_without_fast_image_pull_or_with_a_small_type_the_pull_is_sequential():
    records = records_of("prod")
    for r in records:
        if r["type"] == cold_start.NODE_CLASS and r["inputs"]["metadata"]["name"] == "nvidia":
            del r["inputs"]["spec"]["userData"]
        if r["type"] == cold_start.NODE_POOL and r["inputs"]["metadata"]["name"] == "neuron":
            # nodeadm skips the gate below 4 vCPUs or 7 GiB: one such type in the pool and its nodes may pull sequentially.
            for req in r["inputs"]["spec"]["template"]["spec"]["requirements"]:
                if req["key"] == "node.kubernetes.io/instance-type":
                    req["values"] = [*req["values"], "c5.large"]
    pools = cold_start.report(records)["pools"]
    assert not pools["nvidia"]["parallelPull"] and pools["nvidia"]["imagePullSeconds"] == timing.IMAGE_PULL["nvidia"]
    assert not pools["neuron"]["parallelPull"]


def test_the_artefact_and_the_summary_line(tmp_path):
    result = synth_of("staging").result
    # The artefacts of the objects themselves are left out: only the report files are written.
    write_artifacts(dataclasses.replace(result, resources=[], manifests={}, helm={}, rendered=[]), tmp_path)
    assert json.loads((tmp_path / "cold-start.json").read_text()) == result.cold_start
    lines = _summary(result, tmp_path, 1.0).splitlines()
    deploy = next(i for i, line in enumerate(lines) if line.startswith("deploy time:"))
    line = next(line for line in lines[deploy:] if line.startswith("cold start"))
    nvidia = result.cold_start["pools"]["nvidia"]
    assert f"nvidia {nvidia['readySeconds'] / 60:.1f} min (launch 300s + pull {nvidia['imagePullSeconds']}s (parallel)" in line
    assert f"on a warm node {nvidia['warmReadySeconds'] / 60:.1f} min" in line


@pytest.mark.parametrize("mode, mibps", [("elastic", 1500), ("bursting", 100)])
def test_the_store_throughput_follows_the_file_systems_mode(mode, mibps):
    records = records_of("prod")
    for r in records:
        if r["type"] == cold_start.FILE_SYSTEM:
            r["inputs"]["throughputMode"] = mode
    cpu = cold_start.report(records)["pools"]["cpu"]
    assert cpu["weightsSeconds"] == round(4 * 1024 / mibps) and f"{mibps} MiB/s" in cpu["weightsFrom"]


def test_the_doc_states_the_figures_the_synth_computes():
    from infra.offline import cold_start_doc

    text = cold_start_doc.DOC.read_text()
    current = cold_start_doc.render(text, {s: synth_of(s).result.cold_start for s in ("dev", "staging", "prod")})
    assert text == current, "docs/operators/cold-starts.md is stale: .venv/bin/python -m infra.offline.cold_start_doc"
