"""One synth per shipped stack, shared by every test of the session."""
from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import pytest

from infra.synth import SynthResult, synthesize

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")


class Synth:
    """A synthesized stack with lookups the tests share."""

    def __init__(self, result: SynthResult):
        self.result = result
        self.resources = result.resources
        self.by_urn = {r["urn"]: r for r in self.resources}

    def of_type(self, type_: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str, name: str | None = None) -> dict:
        found = [r for r in self.of_type(type_) if name is None or r["name"] == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r['name'] for r in found]}"
        return found[0]

    def depends_on(self, resource: dict, other: dict) -> bool:
        return other["urn"] in resource["dependencies"]

    def depends_transitively(self, resource: dict, other: dict) -> bool:
        """Through dependencies, or through a component whose children it waits for."""
        seen, todo = set(), list(resource["dependencies"])
        while todo:
            urn = todo.pop()
            if urn == other["urn"]:
                return True
            if urn in seen or urn not in self.by_urn:
                continue
            seen.add(urn)
            todo += self.by_urn[urn]["dependencies"]
            todo += [r["urn"] for r in self.resources if r["parent"] == urn]
        return False

    def release(self, release_name: str) -> dict:
        found = [r for r in self.of_type("kubernetes:helm.sh/v3:Release") if r["inputs"]["name"] == release_name]
        assert len(found) == 1, release_name
        return found[0]


def lean(config: dict, *, llm: bool = False) -> dict:
    """A variant stack's config for a test about something else, without the layers that cost the most synth time
    and take no part in it: Kubeflow Pipelines, Argo CD, the model registry and, unless asked for, the LLM engines."""
    config["ml-platform:kubeflow"] = {"enabled": False}
    config["ml-platform:gitops"] = {"enabled": False}
    config["ml-platform:registry"] = {"enabled": False}
    if not llm:
        config.pop("ml-platform:llm", None)
    return config


_cache: dict[str, Synth] = {}
# Under pytest-xdist, the directory where the first worker to need a stack leaves its synth for the others.
_shared: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _share_synths_between_workers(tmp_path_factory):
    global _shared
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Each worker's base temp is a directory of the run's: their parent is the run's own, rotated by pytest.
        _shared = tmp_path_factory.getbasetemp().parent / "synths"
        _shared.mkdir(exist_ok=True)


def synth_of(stack: str) -> Synth:
    if stack not in _cache:
        _cache[stack] = Synth(_synthesized(stack))
    return _cache[stack]


def _synthesized(stack: str) -> SynthResult:
    if _shared is None:
        return synthesize(stack)
    with open(_shared / f"{stack}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = _shared / f"{stack}.pickle"
        if done.exists():
            return pickle.loads(done.read_bytes())
        result = synthesize(stack)
        partial = done.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(result))
        partial.replace(done)
        return result


@pytest.fixture(params=STACKS)
def stack(request) -> Synth:
    return synth_of(request.param)


@pytest.fixture
def dev() -> Synth:
    return synth_of("dev")


@pytest.fixture
def staging() -> Synth:
    return synth_of("staging")


@pytest.fixture
def prod() -> Synth:
    return synth_of("prod")
