"""Registers a published model-store version in the team's MLflow registry and points an alias at it.

Runs in the registry's own image (it has the MLflow client): the lifecycle pipeline passes this file's text to
`python -c`. The version's files (with its compiled Neuron artifacts and manifest) are logged as the artifacts of
a run and registered from there, so `models:/NAME/VERSION` downloads exactly the store's directory. Registering
the same store version again reuses its registry version: a retried step creates nothing twice.

    python register.py --store-dir /models/sentiment/2 --model sentiment --store-version 2 --alias canary \\
        --metrics-json '{"accuracy": 0.91}' --version-out /tmp/outputs/version
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

# The tag that ties a registry version to the store version it was registered from.
STORE_TAG = "ml-platform.io/store-version"
EXPERIMENT = "model-lifecycle"


def register(client: Any, *, store_dir: Path, model: str, store_version: str, alias: str, metrics: dict[str, float], log: Callable[[str], None] = print) -> int:
    existing = [mv for mv in client.search_model_versions(f"name='{model}'") if (mv.tags or {}).get(STORE_TAG) == store_version]
    if existing:
        version = int(existing[0].version)
        log(f"{model}@{store_version} is already registered as version {version}")
    else:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        run = client.create_run(experiment_id, tags={STORE_TAG: store_version, "ml-platform.io/model": model})
        run_id = run.info.run_id
        client.log_artifacts(run_id, str(store_dir), "model")
        for name, value in sorted(metrics.items()):
            client.log_metric(run_id, name, value)
        client.set_terminated(run_id)
        if not client.search_registered_models(f"name='{model}'"):
            client.create_registered_model(model)
        created = client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run_id, tags={STORE_TAG: store_version})
        version = int(created.version)
        log(f"registered {model}@{store_version} as version {version}")
    client.set_registered_model_alias(model, alias, str(version))
    log(f"alias {model}@{alias} now points at version {version}")
    return version


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def main(argv: Optional[list[str]] = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--store-dir", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--store-version", required=True)
    parser.add_argument("--alias", required=True)
    # The evaluation step's metrics, as its JSON output.
    parser.add_argument("--metrics-json", required=True)
    parser.add_argument("--version-out", type=Path, required=True)
    args = parser.parse_args(argv)
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    if not (args.store_dir / "manifest.json").is_file():
        print(f"error: {args.store_dir} holds no published version (no manifest.json)", file=sys.stderr)
        return 1
    metrics = numeric(json.loads(args.metrics_json))
    version = register(client, store_dir=args.store_dir, model=args.model, store_version=args.store_version, alias=args.alias, metrics=metrics, log=lambda line: print(line, flush=True))
    args.version_out.parent.mkdir(parents=True, exist_ok=True)
    args.version_out.write_text(str(version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
