"""The service's HTTP contract and the model-side logic, with stand-ins for the model."""
from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY

from app import NeuronClassifier, create_app
from trainer.finetune import latest_checkpoint


@pytest.fixture
def client():
    seen = []

    def classify(text):
        seen.append(text)
        return {"label": "POSITIVE" if "good" in text else "NEGATIVE", "score": 0.912345}

    app = create_app(classify)
    app.testing = True
    return app.test_client(), seen


def test_analyze_returns_label_and_score(client):
    http, seen = client
    before = REGISTRY.get_sample_value("sentiment_requests_total", {"outcome": "ok"}) or 0
    response = http.post("/analyze", json={"text": "a good movie"})
    assert response.status_code == 200
    assert response.get_json() == {"label": "POSITIVE", "score": 0.9123}
    assert seen == ["a good movie"]
    assert REGISTRY.get_sample_value("sentiment_requests_total", {"outcome": "ok"}) == before + 1


@pytest.mark.parametrize("body", [None, {}, {"text": ""}, {"text": "   "}, {"text": 42}, ["text"]])
def test_analyze_rejects_bad_input(client, body):
    http, seen = client
    response = http.post("/analyze", json=body) if body is not None else http.post("/analyze", data="not json")
    assert response.status_code == 400 and "error" in response.get_json()
    assert seen == []


def test_analyze_rejects_oversized_text(client):
    http, _ = client
    assert http.post("/analyze", json={"text": "x" * 10_001}).status_code == 413


def test_health_and_method(client):
    http, _ = client
    assert http.get("/healthz").get_json() == {"status": "ok"}
    assert http.get("/analyze").status_code == 405


class FakeTensor:
    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, i):
        return FakeTensor(self.rows[i]) if isinstance(self.rows[i], list) else self.rows[i]

    def tolist(self):
        return self.rows


def test_neuron_classifier_turns_logits_into_label_and_probability():
    calls = []

    def tokenizer(text, **kwargs):
        calls.append(kwargs)
        return {"input_ids": "ids", "attention_mask": "mask"}

    model = lambda ids, mask: [FakeTensor([[0.5, 2.5]])]  # noqa: E731
    result = NeuronClassifier(model, tokenizer, {0: "NEGATIVE", 1: "POSITIVE"})("fine")
    assert result["label"] == "POSITIVE"
    assert result["score"] == pytest.approx(math.exp(2.5) / (math.exp(0.5) + math.exp(2.5)))
    assert calls == [{"max_length": 128, "padding": "max_length", "truncation": True, "return_tensors": "pt"}]


def test_training_resumes_from_the_newest_complete_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step, complete in ((500, True), (1500, True), (2000, False), (1000, True)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
    (tmp_path / "final").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1500"


def test_training_publishes_its_output_version_to_the_model_store(tmp_path, monkeypatch):
    import json

    from trainer.finetune import publish_output

    final = tmp_path / "checkpoints" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    (final / "model.safetensors").write_bytes(b"trained")
    monkeypatch.setenv("MODEL_STORE", str(tmp_path / "models"))
    monkeypatch.setenv("OUTPUT_MODEL", "sentiment")
    monkeypatch.setenv("OUTPUT_VERSION", "ft-1")
    monkeypatch.setenv("JOB_NAME", "nlp/sentiment-finetune-1")
    publish_output(final)
    manifest = json.loads((tmp_path / "models" / "sentiment" / "ft-1" / "manifest.json").read_text())
    assert manifest["source"] == {"job": "nlp/sentiment-finetune-1"} and manifest["version"] == "ft-1"
