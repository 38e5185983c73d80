"""The evaluation gate: accuracy, the metrics it writes, and the failure that stops a pipeline below the minimum."""
from __future__ import annotations

import json

import pytest

from trainer import evaluate


def test_accuracy_counts_matching_labels():
    assert evaluate.accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    with pytest.raises(ValueError, match="3 predictions for 2 labelled examples"):
        evaluate.accuracy([1, 0, 1], [1, 0])


@pytest.mark.parametrize("score, status", [(0.9, 0), (0.8, 1)])
def test_the_gate_fails_below_the_minimum_and_writes_metrics_either_way(tmp_path, monkeypatch, capsys, score, status):
    monkeypatch.setattr(evaluate, "evaluate", lambda model_dir, data_dir, split: {"accuracy": score, "examples": 10, "split": split})
    metrics = tmp_path / "out" / "metrics.json"
    argv = ["--model-dir", str(tmp_path), "--data-dir", str(tmp_path), "--min-accuracy", "0.85", "--metrics", str(metrics)]
    assert evaluate.main(argv) == status
    assert json.loads(metrics.read_text())["accuracy"] == score
    assert ("not publishing this candidate" in capsys.readouterr().err) == bool(status)
