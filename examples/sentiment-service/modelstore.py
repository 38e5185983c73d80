"""A team's model store: `<store>/<model>/<version>/` holding the model files and a `manifest.json`.

The manifest records the framework, a checksum of the model files, where the version came from (a training
job or an external model at a pinned revision) and the compiled artifacts present per accelerator target
(`neuron/<target>/model_neuron.pt`). Versions are immutable: publishing different content under an existing
version is refused. The manifest is the version's completion marker: readers use a version only once it exists.

Two protocols, by the store's backend (`--backend`, default $MODEL_STORE_BACKEND, else efs): on EFS a version is
copied into a hidden directory beside its place and renamed into it, whole or not at all. On S3 through Mountpoint,
which cannot rename on a general purpose bucket, each file is written once, front to back, straight under the
version's prefix, and the manifest last; a compiled artifact is built on local disk and copied the same way.
The platform runs the entrypoints of this module:

    python -m modelstore bootstrap --store /models --model M --version V --hub-id ID --revision SHA
    python -m modelstore compile   --store /models --model M --version V --target inf1|inf2
    python -m modelstore wait      --store /models --model M --version V [--target inf1|inf2]
    python -m modelstore publish   --store /models --model M --version V --source DIR [--origin KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

MANIFEST = "manifest.json"
BACKENDS = ("efs", "s3")
BACKEND_ENV = "MODEL_STORE_BACKEND"
COMPILED_DIR = "neuron"
# Which Neuron SDK compiles for which target: inf1 is torch-neuron, inf2 and Trainium are torch-neuronx.
COMPILERS = {"inf1": "torch-neuron", "inf2": "torch-neuronx", "trn1": "torch-neuronx", "trn2": "torch-neuronx"}
ARTIFACT = "model_neuron.pt"

Log = Callable[[str], None]
Download = Callable[[str, str, Path], None]  # (hub id, revision, into)
Compiler = Callable[[Path, str, Path], str]  # (model dir, target, artifact path) -> compiler version


class VersionConflict(Exception):
    """A version already holds different content: versions are immutable."""


def version_dir(store: Path, model: str, version: str) -> Path:
    return store / model / version


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum(directory: Path) -> tuple[str, dict[str, str]]:
    """The checksum of a version's model files (manifest and compiled artifacts aside), and each file's."""
    files = {
        p.relative_to(directory).as_posix(): _file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST and p.relative_to(directory).parts[0] != COMPILED_DIR
    }
    overall = hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in files.items()).encode()).hexdigest()
    return overall, files


def read_manifest(store: Path, model: str, version: str) -> Optional[dict[str, Any]]:
    path = version_dir(store, model, version) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def default_backend() -> str:
    return os.environ.get(BACKEND_ENV) or "efs"


def _write_manifest(directory: Path, manifest: dict[str, Any], backend: str = "efs") -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if backend == "s3":
        # One PUT when the file closes: readers see the old manifest or the new one, never half of one.
        (directory / MANIFEST).write_text(text)
        return
    # Write then rename: a reader never sees half a manifest.
    partial = directory / f".{MANIFEST}.partial"
    partial.write_text(text)
    os.replace(partial, directory / MANIFEST)


def _copy_file(source: Path, target: Path) -> None:
    """A whole file, front to back, with no metadata calls: what Mountpoint accepts for a new object."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)


def _copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file():
            _copy_file(path, target / path.relative_to(source))


def publish(store: Path, model: str, version: str, source: Path, framework: str, origin: dict[str, Any], log: Log = print,
            backend: Optional[str] = None) -> dict[str, Any]:
    """Publishes the files of `source` as model@version; the same content again is a no-op, other content a conflict."""
    backend = backend or default_backend()
    sha, files = checksum(source)
    existing = read_manifest(store, model, version)
    if existing:
        if existing["sha256"] != sha:
            raise VersionConflict(
                f"{model}@{version} already exists with checksum {existing['sha256'][:12]}, this content has {sha[:12]}: "
                "versions are immutable, publish under a new version"
            )
        log(f"{model}@{version} is already published with the same content")
        return existing
    target = version_dir(store, model, version)
    manifest = {"model": model, "version": version, "framework": framework, "sha256": sha, "files": files, "source": origin, "targets": {}}
    if backend == "s3":
        # No rename: the files under the version's prefix (a retry rewrites what a failed attempt left), the marker last.
        _copy_tree(source, target)
        _write_manifest(target, manifest, backend)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the final place, then rename: the version appears whole or not at all.
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        _write_manifest(staging, manifest)
        os.replace(staging, target)
    log(f"published {model}@{version} ({len(files)} files, sha256 {sha[:12]})")
    return manifest


def add_target(store: Path, model: str, version: str, target: str, compile_with: Compiler, log: Log = print,
               backend: Optional[str] = None) -> dict[str, Any]:
    """Compiles model@version for a Neuron target once; an existing artifact is kept (compiled versions are immutable too)."""
    backend = backend or default_backend()
    directory = version_dir(store, model, version)
    manifest = read_manifest(store, model, version)
    if manifest is None:
        raise FileNotFoundError(f"{model}@{version} is not published in {store}")
    if target in manifest["targets"]:
        log(f"{model}@{version} already has a {target} artifact")
        return manifest
    artifact = directory / COMPILED_DIR / target / ARTIFACT
    if backend == "s3":
        # Built on local disk, then written once into the store: the manifest names it only after it is whole.
        with tempfile.TemporaryDirectory() as tmp:
            partial = Path(tmp) / ARTIFACT
            compiler, sha = compile_with(directory, target, partial), _file_sha256(partial)
            _copy_file(partial, artifact)
    else:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        partial = artifact.with_suffix(".partial")
        compiler, sha = compile_with(directory, target, partial), _file_sha256(partial)
        os.replace(partial, artifact)
    # Re-read: another target may have been added meanwhile.
    manifest = read_manifest(store, model, version) or manifest
    manifest["targets"][target] = {"path": artifact.relative_to(directory).as_posix(), "sha256": sha, "compiler": compiler}
    _write_manifest(directory, manifest, backend)
    log(f"compiled {model}@{version} for {target} with {compiler}")
    return manifest


def missing(store: Path, model: str, version: str, target: Optional[str]) -> Optional[str]:
    """What is still missing for model@version (and its target), or None when it can be served."""
    manifest = read_manifest(store, model, version)
    if manifest is None:
        return f"no {MANIFEST} at {version_dir(store, model, version)} yet"
    if target and target not in manifest["targets"]:
        return f"published, but not yet compiled for {target}"
    return None


def wait(store: Path, model: str, version: str, target: Optional[str], poll_seconds: float, timeout_seconds: float, log: Log = print, clock=time.monotonic, sleep=time.sleep) -> None:
    """Returns once model@version (and its target artifact) is in the store; says once, clearly, what it waits for."""
    started, said = clock(), None
    while (reason := missing(store, model, version, target)) is not None:
        if reason != said:
            log(f"waiting for model {model}@{version}{f' ({target})' if target else ''}: {reason}")
            said = reason
        if clock() - started > timeout_seconds:
            raise TimeoutError(f"model {model}@{version} did not appear within {timeout_seconds:.0f}s: {reason}")
        sleep(poll_seconds)
    log(f"model {model}@{version}{f' ({target})' if target else ''} is ready")


def bootstrap(store: Path, model: str, version: str, hub_id: str, revision: str, download: Download, log: Log = print,
              backend: Optional[str] = None) -> dict[str, Any]:
    """Publishes a public model at a pinned revision as model@version, downloading it only when absent."""
    backend = backend or default_backend()
    existing = read_manifest(store, model, version)
    if existing:
        if existing["source"].get("external") != {"id": hub_id, "revision": revision}:
            raise VersionConflict(f"{model}@{version} exists from another source ({existing['source']}); pick a new version")
        log(f"{model}@{version} is already in the store")
        return existing
    # EFS: download inside the store (same file system, no size limit); S3: on local disk, the store only gets the result.
    with tempfile.TemporaryDirectory(dir=store if backend == "efs" else None) as tmp:
        download(hub_id, revision, Path(tmp))
        return publish(store, model, version, Path(tmp), "pytorch", {"external": {"id": hub_id, "revision": revision}}, log, backend)


def hub_download(hub_id: str, revision: str, into: Path) -> None:
    """Downloads a Hugging Face model at an exact revision (through the cluster's NAT)."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=hub_id, revision=revision, local_dir=into, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"])


def neuron_compile(model_dir: Path, target: str, artifact: Path, max_length: int = 128) -> str:
    """Traces the sequence classifier for the target's NeuronCores with a fixed input shape."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, torchscript=True).eval()
    encoded = tokenizer("a sample sentence", max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    example = (encoded["input_ids"], encoded["attention_mask"])
    if COMPILERS[target] == "torch-neuron":
        import torch_neuron  # noqa: F401  (registers torch.neuron)

        traced = torch.neuron.trace(model, example_inputs=example)
        version = torch_neuron.__version__
    else:
        import torch_neuronx

        traced = torch_neuronx.trace(model, example)
        version = torch_neuronx.__version__
    torch.jit.save(traced, str(artifact))
    return f"{COMPILERS[target]} {version}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelstore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("bootstrap", "compile", "wait", "publish"):
        p = sub.add_parser(name)
        p.add_argument("--store", type=Path, required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--version", required=True)
        p.add_argument("--backend", choices=BACKENDS, default=default_backend(), help=f"the store's protocol (default: ${BACKEND_ENV}, else efs)")
        if name == "bootstrap":
            p.add_argument("--hub-id", required=True)
            p.add_argument("--revision", required=True)
        elif name == "publish":
            p.add_argument("--source", type=Path, required=True)
            p.add_argument("--framework", default="pytorch")
            # Where the version came from (a pipeline run, its evaluation), recorded in the manifest.
            p.add_argument("--origin", action="append", default=[], metavar="KEY=VALUE")
        else:
            p.add_argument("--target", choices=sorted(COMPILERS), required=name == "compile")
        if name in ("compile", "wait"):
            p.add_argument("--poll-seconds", type=float, default=15)
            p.add_argument("--timeout-seconds", type=float, default=6 * 3600)
    args = parser.parse_args(argv)
    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.command == "bootstrap":
            bootstrap(args.store, args.model, args.version, args.hub_id, args.revision, hub_download, log, args.backend)
        elif args.command == "publish":
            origin = dict(item.split("=", 1) for item in args.origin)
            publish(args.store, args.model, args.version, args.source, args.framework, origin, log, args.backend)
        elif args.command == "compile":
            # The base model may still be training or downloading: wait for it first.
            wait(args.store, args.model, args.version, None, args.poll_seconds, args.timeout_seconds, log)
            add_target(args.store, args.model, args.version, args.target, neuron_compile, log, args.backend)
        else:
            wait(args.store, args.model, args.version, args.target, args.poll_seconds, args.timeout_seconds, log)
    except (VersionConflict, TimeoutError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
