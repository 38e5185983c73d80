"""The sentiment lifecycle pipeline (examples/pipelines): the checked-in YAML is what the KFP SDK compiles from its
definition, its steps run in order, each on a pinned image with requests and a memory limit on its pool; and the
registration step it runs is idempotent."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from types import SimpleNamespace

import pytest
import yaml
from pydantic import TypeAdapter

from infra.config.base import ImageRef
from infra.config.registry import MLFLOW_IMAGE
from infra.lib import headroom
from infra.lib.accelerators import KINDS, POOL_LABEL
from tests.conftest import ROOT

PIPELINES = ROOT / "examples" / "pipelines"
COMPILED = PIPELINES / "sentiment_lifecycle.yaml"
SDK = ROOT / ".venv-pipelines" / "bin" / "python"
ORDER = ["train", "evaluate", "publish", "compile-for-neuron", "register"]
# Pool and accelerators per step.
POOLS = {"train": ("nvidia", 1), "evaluate": ("cpu", 0), "publish": ("cpu", 0), "compile-for-neuron": ("neuron", headroom.COMPILE_NEURON_CORES), "register": ("cpu", 0)}


@pytest.fixture(scope="module")
def compiled() -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_checked_in_pipeline_is_what_the_sdk_compiles(tmp_path):
    assert SDK.exists(), "the pipeline SDK has its own virtualenv: run ./setup"
    out = tmp_path / "compiled.yaml"
    proc = subprocess.run([str(SDK), str(PIPELINES / "sentiment_lifecycle.py"), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == COMPILED.read_text(), "recompile: .venv-pipelines/bin/python examples/pipelines/sentiment_lifecycle.py"


def test_the_steps_run_in_lifecycle_order(compiled):
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(ORDER)
    for before, step in zip(ORDER, ORDER[1:]):
        assert before in tasks[step]["dependentTasks"], f"{step} must wait for {before}"
    assert "dependentTasks" not in tasks["train"]
    # The registry records the evaluation that let the version through.
    assert tasks["register"]["inputs"]["parameters"]["metrics"]["taskOutputParameter"] == {"outputParameterKey": "metrics", "producerTask": "evaluate"}
    assert spec["root"]["inputDefinitions"]["parameters"]["registry_uri"]["parameterType"] == "STRING"
    assert "defaultValue" not in spec["root"]["inputDefinitions"]["parameters"]["registry_uri"], "each team passes its own registry"


def test_each_step_is_pinned_sized_and_placed_on_its_pool(compiled):
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == sorted(f"exec-{s}" for s in ORDER)
    for step, (pool, accelerators) in POOLS.items():
        container, placement = executors[f"exec-{step}"]["container"], platform[f"exec-{step}"]
        TypeAdapter(ImageRef).validate_python(container["image"])
        resources = container["resources"]
        assert resources["resourceCpuRequest"] and "resourceCpuLimit" not in resources, step
        assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"], step
        assert placement["nodeSelector"]["labels"][POOL_LABEL] == pool
        kind = KINDS[pool]
        if kind.resource:
            assert resources["accelerator"]["resourceType"] == kind.resource and resources["accelerator"]["resourceCount"] == str(accelerators)
            assert placement["tolerations"] == [kind.toleration], step
        else:
            assert "accelerator" not in resources and "tolerations" not in placement, step
        assert placement["securityContext"]["runAsNonRoot"] is True
    assert executors["exec-register"]["container"]["image"] == MLFLOW_IMAGE, "the registry's client runs in the registry's image"
    compile_resources = executors["exec-compile-for-neuron"]["container"]["resources"]
    assert (compile_resources["resourceCpuRequest"], compile_resources["resourceMemoryRequest"]) == (headroom.COMPILE_CPU, f"{headroom.COMPILE_MEMORY_GIB}Gi")
    # Only the step that calls the registry is in the mesh (its mTLS identity is what the registry admits).
    injected = {s for s in ORDER if platform[f"exec-{s}"]["podMetadata"]["labels"]["sidecar.istio.io/inject"] == "true"}
    assert injected == {"register"}


def test_the_store_writing_steps_follow_the_runs_store_backend(compiled):
    """A team with an S3 store runs with its writable claim and the S3 protocol (docs/app-teams/model-store.md); the
    defaults are an EFS store's."""
    spec, platform = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert (params["store_backend"]["defaultValue"], params["store_claim"]["defaultValue"]) == ("efs", "model-store")
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("publish", "compile-for-neuron"):
        args = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["args"]
        assert args[args.index("--backend") + 1] == "{{$.inputs.parameters['backend']}}", step
        assert tasks[step]["inputs"]["parameters"]["backend"] == {"componentInputParameter": "store_backend"}, step
        [mount] = [m for m in platform[f"exec-{step}"]["pvcMount"] if m["mountPath"] == "/models"]
        assert mount["pvcNameParameter"] == {"componentInputParameter": "store_claim"}, step


def test_the_register_step_runs_the_checked_in_script(compiled):
    spec, _ = compiled
    command = spec["deploymentSpec"]["executors"]["exec-register"]["container"]["command"]
    assert command[:2] == ["python", "-c"] and command[2] == (PIPELINES / "register.py").read_text()


# -- the registration script, against a client that keeps versions in memory -----------------------------------------
def _register_module():
    loaded = importlib.util.spec_from_file_location("lifecycle_register", PIPELINES / "register.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


class FakeRegistry:
    def __init__(self):
        self.versions, self.aliases, self.models, self.runs, self.artifacts = [], {}, set(), [], []

    def search_model_versions(self, query):
        return [v for v in self.versions if query == f"name='{v.name}'"]

    def get_experiment_by_name(self, name):
        return None

    def create_experiment(self, name):
        return "1"

    def create_run(self, experiment_id, tags):
        run = SimpleNamespace(info=SimpleNamespace(run_id=f"run{len(self.runs)}", artifact_uri=f"mlflow-artifacts:/1/run{len(self.runs)}/artifacts"))
        self.runs.append(run)
        return run

    def log_artifacts(self, run_id, local_dir, artifact_path):
        self.artifacts.append((run_id, local_dir, artifact_path))

    def log_metric(self, run_id, key, value):
        pass

    def set_terminated(self, run_id):
        pass

    def search_registered_models(self, query):
        return [m for m in self.models if query == f"name='{m}'"]

    def create_registered_model(self, name):
        self.models.add(name)

    def create_model_version(self, name, source, run_id, tags):
        version = SimpleNamespace(name=name, version=str(len(self.versions) + 1), source=source, tags=tags)
        self.versions.append(version)
        return version

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[(name, alias)] = version


def test_registering_a_store_version_twice_reuses_its_registry_version(tmp_path):
    register = _register_module()
    store = tmp_path / "sentiment" / "2"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text("{}")
    client = FakeRegistry()
    argv = ["--tracking-uri", "http://mlflow-nlp.mlflow.svc.cluster.local:5000", "--store-dir", str(store), "--model", "sentiment",
            "--store-version", "2", "--alias", "canary", "--metrics-json", json.dumps({"accuracy": 0.91, "split": "validation"}), "--version-out", str(tmp_path / "out")]
    assert register.main(argv, client=client) == 0
    assert register.main(argv, client=client) == 0
    assert [v.source for v in client.versions] == ["mlflow-artifacts:/1/run0/artifacts/model"], "one version, from the run that logged the store's files"
    assert client.artifacts == [("run0", str(store), "model")]
    assert client.aliases == {("sentiment", "canary"): "1"} and (tmp_path / "out").read_text() == "1"


def test_registering_needs_a_published_version(tmp_path, capsys):
    argv = ["--tracking-uri", "http://x", "--store-dir", str(tmp_path), "--model", "m", "--store-version", "1", "--alias", "canary", "--metrics-json", "{}", "--version-out", str(tmp_path / "o")]
    assert _register_module().main(argv, client=FakeRegistry()) == 1
    assert "holds no published version" in capsys.readouterr().err
