"""The synth's command-line contract: artifacts, exit codes, determinism, launch like the language host."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import lean

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ("resources.json", "manifests", "helm", "policy.json", "graph.mmd")


def synth_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """The CLI in this process: the same exit codes and output, without paying for the SDK imports again."""
    from infra import synth

    code = synth.main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["infra.synth", *args], code, out.out, out.err)


@pytest.fixture(scope="module")
def prod_twice(tmp_path_factory):
    """Two independent processes, side by side."""
    outs = [tmp_path_factory.mktemp(f"prod{i}") for i in range(2)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "infra.synth", "--stack", "prod", "--out", str(o)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for o in outs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results, outs


def test_prod_synth_exits_0_and_writes_every_artifact(prod_twice):
    (proc, _), (out, _) = prod_twice
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all((out / a).exists() for a in ARTIFACTS)
    doc = json.loads((out / "resources.json").read_text())
    assert doc["project"] == "ml-platform" and doc["stack"] == "prod"
    types = [r["type"] for r in doc["resources"]]
    for t in ("aws:ec2/vpc:Vpc", "eks:index:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:kms/key:Key"):
        assert t in types
    assert set(doc["resources"][0]) == {"urn", "type", "name", "parent", "custom", "provider", "dependencies", "inputs", "outputs"}
    assert "resources" in proc.stdout and "policy:" in proc.stdout and str(out) in proc.stdout


def test_two_runs_are_byte_identical(prod_twice):
    _, (a, b) = prod_twice
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_graph_shows_components_and_their_edges(prod_twice):
    _, (out, _) = prod_twice
    graph = (out / "graph.mmd").read_text()
    assert graph.startswith("flowchart TD")
    assert "    network --> cluster" in graph.splitlines()


def test_broken_stack_file_exits_2_with_one_line_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "stacks" / "Pulumi.prod.yaml").read_text().replace("azCount: 3", "azCount: 12"))
    proc = synth_main(capsys, "--stack", "prod", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line.strip() for line in proc.stderr.splitlines()[1:]]
    assert errors == ["ml-platform:network.azCount: 12 is not allowed: Input should be less than or equal to 6"]
    assert not (tmp_path / "out").exists(), "nothing is written for an invalid configuration"


def test_unreadable_stack_file_exits_2(tmp_path, capsys):
    proc = synth_main(capsys, "--stack", "prod", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "no such stack file" in proc.stderr


def test_mandatory_violation_exits_1_and_names_the_rule(tmp_path, capsys):
    bad = tmp_path / "open.yaml"
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    lean(doc["config"])["ml-platform:cluster"]["endpoint"].update(publicAccess=True, publicAccessCidrs=["0.0.0.0/0"])
    bad.write_text(yaml.safe_dump(doc))
    proc = synth_main(capsys, "--stack", "prod", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[mandatory] eks-endpoint-not-world-open" in proc.stdout
    policy = json.loads((tmp_path / "out" / "policy.json").read_text())
    assert {"eks-endpoint-not-world-open", "eks-endpoint-private"} <= {
        v["policy"] for v in policy["violations"] if v["enforcement"] == "mandatory"
    }


def test_program_imports_when_launched_like_the_language_host(tmp_path):
    """The host runs `runpy.run_path('.')` in the project dir from a script elsewhere: only '.' is importable."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(
        textwrap.dedent(
            """
            import importlib.util, json, os, runpy, sys
            import pulumi
            assert os.getcwd() not in sys.path and "" not in sys.path
            # The project's mocks, loaded by path so that the project stays off sys.path.
            spec = importlib.util.spec_from_file_location("synth_mocks", os.path.join("infra", "offline", "mocks.py"))
            synth_mocks = sys.modules["synth_mocks"] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(synth_mocks)
            mocks = synth_mocks.PlatformMocks("us-east-1")
            monitor = synth_mocks.RecordingMonitor(mocks)
            pulumi.runtime.set_mocks(mocks, project="ml-platform", stack="prod", monitor=monitor)
            @pulumi.runtime.test
            def run():
                assert "infra" not in sys.modules and "components" not in sys.modules
                runpy.run_path(".", run_name="__main__")
            run()
            print(json.dumps(sorted({r.type for r in monitor.registrations.values()})))
            """
        )
    )
    config = lean(yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"])
    config["ml-platform:alertingSecrets"] = {"oncall": "0" * 32}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PULUMI_CONFIG"] = json.dumps({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(["ml-platform:alertingSecrets"])
    proc = subprocess.run([sys.executable, "-P", str(launcher)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    registered = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "eks:index:Cluster" in registered and "aws:ec2/vpc:Vpc" in registered


def test_a_stack_without_policy_levels_exits_2_naming_the_file_to_create(tmp_path, capsys):
    config = tmp_path / "Pulumi.qa.yaml"
    config.write_text((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    proc = synth_main(capsys, "--stack", "qa", "--config", str(config), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "stack 'qa' has no policy levels: create policies/config/qa.json" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_config_file_without_out_writes_beside_the_stack_artifacts(tmp_path, capsys, monkeypatch):
    """--config alone writes to build/<config file stem>/, leaving build/<stack>/ as the stack file made it."""
    from infra import synth
    from tests.conftest import synth_of

    dev = synth_of("dev").result
    monkeypatch.setattr(synth, "ROOT", tmp_path)
    monkeypatch.setattr(synth, "synthesize", lambda stack, config_file: dev if config_file and config_file.name == "experiment.yaml" else None)
    proc = synth_main(capsys, "--stack", "dev", "--config", str(tmp_path / "experiment.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "build" / "experiment" / "resources.json").exists()
    assert not (tmp_path / "build" / "dev").exists()
    assert f"artifacts: {tmp_path / 'build' / 'experiment'}/" in proc.stdout


def test_summary_counts_match_the_artifacts(tmp_path):
    """The resources and violations the summary states are those in resources.json and policy.json."""
    import re

    from infra.synth import _summary, write_artifacts
    from tests.conftest import synth_of

    result = synth_of("dev").result
    write_artifacts(result, tmp_path)
    summary = _summary(result, tmp_path, 1.0)
    resources = json.loads((tmp_path / "resources.json").read_text())["resources"]
    policy = json.loads((tmp_path / "policy.json").read_text())
    total, custom, components = map(int, re.search(r": (\d+) resources \((\d+) cloud and Kubernetes objects, (\d+) components\)", summary).groups())
    assert total == len(resources) == policy["summary"]["resources"]
    assert custom == sum(r["custom"] for r in resources) == sum(int(n) for n in re.findall(r"^  \S+ +(\d+)$", summary, re.M))
    assert components == sum(not r["custom"] for r in resources)
    mandatory, advisory = map(int, re.search(r"policy: (\d+) mandatory, (\d+) advisory", summary).groups())
    levels = [v["enforcement"] for v in policy["violations"]]
    assert (mandatory, advisory) == (levels.count("mandatory"), levels.count("advisory"))
    assert advisory > 0, "dev has advisory findings: the count is checked against something"
    manifests, releases, rendered = map(int, re.search(r"manifests: (\d+), helm releases: (\d+), chart-rendered objects: (\d+)", summary).groups())
    assert rendered == len(json.loads((tmp_path / "resources.json").read_text())["chartRendered"]) == policy["summary"]["chartRendered"] > 0
    assert manifests == len(list((tmp_path / "manifests").iterdir()))
    assert releases == len(list((tmp_path / "helm").iterdir()))


def test_artifacts_rewritten_in_place_hold_exactly_what_a_fresh_folder_does(tmp_path):
    """A second synth into the same folder leaves an unchanged file alone, rewrites a changed one and removes what
    the stack no longer makes; the result is byte for byte a fresh folder's."""
    from infra.synth import write_artifacts
    from tests.conftest import synth_of

    result = synth_of("dev").result
    fresh, reused = tmp_path / "fresh", tmp_path / "reused"
    write_artifacts(result, fresh)
    write_artifacts(result, reused)
    kept = reused / "graph.mmd"
    os.utime(kept, ns=(1, 1))
    changed = next((reused / "manifests").iterdir())
    changed.write_text("stale\n")
    (reused / "manifests" / "gone--cluster--old.yaml").write_text("kind: Gone\n")
    (reused / "rendered" / "old-release" / "templates").mkdir(parents=True)
    (reused / "rendered" / "old-release" / "templates" / "x.yaml").write_text("x\n")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("not an artefact\n")
    (reused / "cost.json").unlink()
    (reused / "cost.json").symlink_to(elsewhere)
    write_artifacts(result, reused)
    assert elsewhere.read_text() == "not an artefact\n" and not (reused / "cost.json").is_symlink(), "never written through a link"
    assert kept.stat().st_mtime_ns == 1
    files = sorted(p.relative_to(fresh) for p in fresh.rglob("*"))
    assert files == sorted(p.relative_to(reused) for p in reused.rglob("*"))
    assert all((fresh / f).read_bytes() == (reused / f).read_bytes() for f in files if (fresh / f).is_file())
    # Each chart-rendered line, spliced from its object's JSON, reads back as the record itself.
    assert json.loads((fresh / "resources.json").read_text())["chartRendered"] == json.loads(json.dumps(result.rendered))


def test_the_mock_answers_a_registration_with_the_wire_state_the_sdk_would_serialize():
    """Inputs sent back as they came, plus what the provider adds: the SDK reads the same outputs as from the whole
    state serialized again (which lifts a nested secret to its top-level property; the SDK's reading does too)."""
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import _ensure_event_loop
    from pulumi.runtime.sync_await import _sync_await

    from infra.offline.mocks import _state_struct

    _ensure_event_loop()
    secret = {rpc._special_sig_key: rpc._special_secret_sig, "value": "s3cr3t"}
    struct = _sync_await(rpc.serialize_properties({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 2, "token": secret}}, {}))
    inputs = rpc.deserialize_properties(struct)
    state = {**inputs, "arn": "arn:aws:x", "id": "ns/a"}
    read = lambda wire: rpc.deserialize_properties(wire)  # noqa: E731
    assert read(_state_struct(struct, inputs, state, "kubernetes:apps/v1:Deployment")) == read(_sync_await(rpc.serialize_properties(state, {})))
    assert read(_state_struct(struct, inputs, state, "kubernetes:apps/v1:Deployment"))["spec"] == secret | {"value": {"replicas": 2, "token": "s3cr3t"}}
    # A state that changed an input is serialized whole.
    changed = {**state, "spec": {"replicas": 3}}
    assert _state_struct(struct, inputs, changed, "kubernetes:apps/v1:Deployment") == _sync_await(rpc.serialize_properties(changed, {}))


def test_source_positions_are_skipped_only_while_the_program_runs():
    """The SDK function the synth stands in for exists at the pinned SDK, and is back once the program ran."""
    from pulumi.runtime import resource
    from pulumi.runtime.proto import source_pb2

    from infra.offline.mocks import without_source_positions

    real = resource._get_stack_trace
    with without_source_positions():
        assert resource._get_stack_trace() == source_pb2.StackTrace()
    assert resource._get_stack_trace is real
