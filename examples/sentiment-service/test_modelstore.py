"""The model store protocol: immutable versions, waiting with one clear line, bootstrap and compile with fakes."""
from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest

import modelstore
from modelstore import VersionConflict, add_target, bootstrap, publish, read_manifest, wait


def model_files(directory: Path, weights: bytes = b"weights-v1") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}')
    (directory / "model.safetensors").write_bytes(weights)
    return directory


def test_publish_writes_the_version_and_its_manifest(tmp_path):
    store = tmp_path / "store"
    manifest = publish(store, "sentiment", "1", model_files(tmp_path / "src"), "pytorch", {"job": "nlp/sentiment-finetune-1"}, log=lambda _: None)
    on_disk = read_manifest(store, "sentiment", "1")
    assert on_disk == manifest
    assert on_disk["framework"] == "pytorch" and on_disk["source"] == {"job": "nlp/sentiment-finetune-1"} and on_disk["targets"] == {}
    assert set(on_disk["files"]) == {"config.json", "model.safetensors"} and len(on_disk["sha256"]) == 64
    assert (store / "sentiment" / "1" / "model.safetensors").read_bytes() == b"weights-v1"
    assert [p.name for p in (store / "sentiment").iterdir()] == ["1"], "no staging directory left behind"


def test_versions_are_immutable(tmp_path):
    store, lines = tmp_path / "store", []
    publish(store, "sentiment", "1", model_files(tmp_path / "a"), "pytorch", {}, log=lines.append)
    # The same content again is fine; different content under the same version is refused.
    publish(store, "sentiment", "1", model_files(tmp_path / "b"), "pytorch", {}, log=lines.append)
    assert lines[-1] == "sentiment@1 is already published with the same content"
    with pytest.raises(VersionConflict, match="sentiment@1 already exists with checksum .* versions are immutable"):
        publish(store, "sentiment", "1", model_files(tmp_path / "c", b"weights-v2"), "pytorch", {}, log=lines.append)
    assert (store / "sentiment" / "1" / "model.safetensors").read_bytes() == b"weights-v1"


def test_bootstrap_downloads_the_pinned_revision_once(tmp_path):
    store, calls = tmp_path / "store", []
    store.mkdir()

    def download(hub_id, revision, into):
        calls.append((hub_id, revision))
        model_files(into)

    first = bootstrap(store, "sentiment-base", "1", "org/model", "0123abc", download, log=lambda _: None)
    again = bootstrap(store, "sentiment-base", "1", "org/model", "0123abc", download, log=lambda _: None)
    assert calls == [("org/model", "0123abc")] and first == again
    assert first["source"] == {"external": {"id": "org/model", "revision": "0123abc"}}
    with pytest.raises(VersionConflict, match="exists from another source"):
        bootstrap(store, "sentiment-base", "1", "org/model", "fedcba9", download, log=lambda _: None)


def fake_compiler(seen: list):
    def compile_with(model_dir: Path, target: str, artifact: Path) -> str:
        seen.append((model_dir.name, target))
        assert (model_dir / "config.json").exists(), "compiles from the published model"
        artifact.write_bytes(f"compiled for {target}".encode())
        return f"{modelstore.COMPILERS[target]} 2.0-fake"

    return compile_with


def test_compile_adds_each_target_once_beside_the_model(tmp_path):
    store, seen = tmp_path / "store", []
    publish(store, "sentiment", "1", model_files(tmp_path / "src"), "pytorch", {}, log=lambda _: None)
    add_target(store, "sentiment", "1", "inf1", fake_compiler(seen), log=lambda _: None)
    manifest = add_target(store, "sentiment", "1", "inf2", fake_compiler(seen), log=lambda _: None)
    add_target(store, "sentiment", "1", "inf1", fake_compiler(seen), log=lambda _: None)
    assert seen == [("1", "inf1"), ("1", "inf2")]
    assert manifest["targets"]["inf1"]["path"] == "neuron/inf1/model_neuron.pt" and manifest["targets"]["inf1"]["compiler"] == "torch-neuron 2.0-fake"
    assert manifest["targets"]["inf2"]["compiler"] == "torch-neuronx 2.0-fake"
    # Compiled artifacts do not change the model's own checksum.
    assert modelstore.checksum(store / "sentiment" / "1")[0] == manifest["sha256"]
    with pytest.raises(FileNotFoundError, match="sentiment@2 is not published"):
        add_target(store, "sentiment", "2", "inf1", fake_compiler(seen), log=lambda _: None)


def test_wait_says_once_what_it_waits_for_and_returns_when_ready(tmp_path):
    store, lines = tmp_path / "store", []
    store.mkdir()

    def publish_soon():
        time.sleep(0.2)
        publish(store, "sentiment", "1", model_files(tmp_path / "src"), "pytorch", {}, log=lambda _: None)
        time.sleep(0.2)
        add_target(store, "sentiment", "1", "inf2", fake_compiler([]), log=lambda _: None)

    worker = threading.Thread(target=publish_soon)
    worker.start()
    wait(store, "sentiment", "1", "inf2", poll_seconds=0.02, timeout_seconds=10, log=lines.append)
    worker.join()
    assert lines[0] == f"waiting for model sentiment@1 (inf2): no manifest.json at {store / 'sentiment' / '1'} yet"
    assert lines[1] == "waiting for model sentiment@1 (inf2): published, but not yet compiled for inf2"
    assert lines[2:] == ["model sentiment@1 (inf2) is ready"]


def test_wait_gives_up_after_its_timeout(tmp_path):
    ticks = iter(range(0, 1000, 50))
    with pytest.raises(TimeoutError, match="did not appear within 120s"):
        wait(tmp_path, "m", "1", None, 1, 120, log=lambda _: None, clock=lambda: next(ticks), sleep=lambda _: None)


def test_command_line_compile_waits_then_compiles(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    publish(store, "sentiment", "1", model_files(tmp_path / "src"), "pytorch", {}, log=lambda _: None)
    monkeypatch.setattr(modelstore, "neuron_compile", fake_compiler([]))
    assert modelstore.main(["compile", "--store", str(store), "--model", "sentiment", "--version", "1", "--target", "inf1"]) == 0
    assert json.loads((store / "sentiment" / "1" / "manifest.json").read_text())["targets"]["inf1"]["sha256"]
    assert modelstore.main(["wait", "--store", str(store), "--model", "sentiment", "--version", "2", "--timeout-seconds", "0", "--poll-seconds", "0"]) == 1
    assert "did not appear within 0s" in capsys.readouterr().err


def test_command_line_publish_records_where_the_version_came_from(tmp_path, capsys):
    store, source = tmp_path / "store", model_files(tmp_path / "src")
    argv = ["publish", "--store", str(store), "--model", "sentiment", "--version", "2", "--source", str(source), "--origin", "pipelineRun=run-7", "--origin", "accuracy=0.91"]
    assert modelstore.main(argv) == 0
    manifest = json.loads((store / "sentiment" / "2" / "manifest.json").read_text())
    assert manifest["source"] == {"pipelineRun": "run-7", "accuracy": "0.91"}
    assert modelstore.main(argv) == 0, "the same content again is a no-op"
    (source / "extra.bin").write_bytes(b"other")
    assert modelstore.main(argv) == 1
    assert "versions are immutable" in capsys.readouterr().err


# -- the S3 protocol (Mountpoint for Amazon S3) ---------------------------------------------------------------------

@pytest.fixture
def s3_store(tmp_path, monkeypatch):
    """A store that behaves like a Mountpoint mount of a general purpose bucket: nothing is renamed there."""
    store = tmp_path / "bucket"
    store.mkdir()
    real_replace, real_rename = os.replace, os.rename

    def no_rename_in_store(real):
        def call(src, dst, *args, **kwargs):
            if str(store) in (str(src) + str(dst)):
                raise OSError(errno.ENOSYS, "Mountpoint: rename is not supported on a general purpose bucket", str(src))
            return real(src, dst, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", no_rename_in_store(real_replace))
    monkeypatch.setattr(os, "rename", no_rename_in_store(real_rename))
    return store


def test_s3_publish_writes_the_files_under_the_prefix_then_the_marker(tmp_path, s3_store, monkeypatch):
    written_before_marker = []
    real_write = modelstore._write_manifest

    def watch(directory, manifest, backend="efs"):
        written_before_marker.extend(sorted(p.name for p in directory.iterdir()))
        real_write(directory, manifest, backend)

    monkeypatch.setattr(modelstore, "_write_manifest", watch)
    manifest = publish(s3_store, "sentiment", "1", model_files(tmp_path / "src"), "pytorch", {}, log=lambda _: None, backend="s3")
    assert written_before_marker == ["config.json", "model.safetensors"], "every model file is in place before the marker"
    assert read_manifest(s3_store, "sentiment", "1") == manifest
    assert sorted(p.name for p in (s3_store / "sentiment" / "1").iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
    with pytest.raises(OSError, match="rename is not supported"):
        publish(s3_store, "sentiment", "2", model_files(tmp_path / "src"), "pytorch", {}, log=lambda _: None, backend="efs")


def test_s3_readers_ignore_a_version_without_its_marker(tmp_path, s3_store):
    # A publisher that died midway: the files are there, the marker is not.
    model_files(s3_store / "sentiment" / "1")
    assert modelstore.missing(s3_store, "sentiment", "1", None) == f"no manifest.json at {s3_store / 'sentiment' / '1'} yet"
    with pytest.raises(TimeoutError):
        wait(s3_store, "sentiment", "1", None, 0, 0, log=lambda _: None, sleep=lambda _: None)
    # The retried publish rewrites the files and completes the version.
    publish(s3_store, "sentiment", "1", model_files(tmp_path / "src", b"weights-v1"), "pytorch", {}, log=lambda _: None, backend="s3")
    assert modelstore.missing(s3_store, "sentiment", "1", None) is None


def test_s3_bootstrap_and_compile_never_rename_in_the_store(tmp_path, s3_store, monkeypatch):
    monkeypatch.setenv(modelstore.BACKEND_ENV, "s3")
    scratch = []

    def download(hub_id, revision, into):
        scratch.append(into)
        model_files(into)

    bootstrap(s3_store, "base", "1", "org/model", "0123abc", download, log=lambda _: None)
    assert not str(scratch[0]).startswith(str(s3_store)), "downloaded on local disk, not in the bucket"
    manifest = add_target(s3_store, "base", "1", "inf2", fake_compiler([]), log=lambda _: None)
    artifact = s3_store / "base" / "1" / manifest["targets"]["inf2"]["path"]
    assert artifact.read_bytes() == b"compiled for inf2"
    assert modelstore.missing(s3_store, "base", "1", "inf2") is None
    assert modelstore.main(["wait", "--store", str(s3_store), "--model", "base", "--version", "1", "--target", "inf2", "--backend", "s3"]) == 0
