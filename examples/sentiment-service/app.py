"""Sentiment analysis over HTTP: POST /analyze {"text": "..."} -> {"label": "POSITIVE", "score": 0.98}.

Runs on CPU, an NVIDIA GPU or an Inferentia NeuronCore, chosen by ACCELERATOR. MODEL_DIR is a version of the
team's model store (`<store>/<model>/<version>`); on Neuron, NEURON_TARGET (inf1 or inf2) picks the artifact
compiled for it. Metrics are served on METRICS_PORT for Prometheus (through the Istio sidecar's merged endpoint).
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from flask import Flask, jsonify, request
from prometheus_client import Counter, Histogram, start_http_server

Classifier = Callable[[str], dict[str, Any]]
MAX_TEXT_CHARS = 10_000
DEFAULT_MODEL = "distilbert-base-uncased-finetuned-sst-2-english"

REQUESTS = Counter("sentiment_requests_total", "Analyze requests by outcome", ["outcome"])
LATENCY = Histogram("sentiment_inference_seconds", "Model inference time")


def create_app(classify: Classifier) -> Flask:
    app = Flask(__name__)

    @app.post("/analyze")
    def analyze():
        body = request.get_json(silent=True)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            REQUESTS.labels("invalid").inc()
            return jsonify(error='expected a JSON body {"text": "<non-empty string>"}'), 400
        if len(text) > MAX_TEXT_CHARS:
            REQUESTS.labels("invalid").inc()
            return jsonify(error=f"text is longer than {MAX_TEXT_CHARS} characters"), 413
        started = time.perf_counter()
        result = classify(text)
        LATENCY.observe(time.perf_counter() - started)
        REQUESTS.labels("ok").inc()
        return jsonify(label=result["label"], score=round(float(result["score"]), 4))

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


class NeuronClassifier:
    """A model compiled for Inferentia (torch-neuron or torch-neuronx): fixed-length inputs, logits out."""

    def __init__(self, model: Any, tokenizer: Any, id2label: dict[int, str], max_length: int = 128):
        self.model, self.tokenizer, self.id2label, self.max_length = model, tokenizer, id2label, max_length

    def __call__(self, text: str) -> dict[str, Any]:
        encoded = self.tokenizer(text, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt")
        logits = self.model(encoded["input_ids"], encoded["attention_mask"])[0][0].tolist()
        peak = max(logits)
        weights = [math.exp(x - peak) for x in logits]
        best = max(range(len(weights)), key=weights.__getitem__)
        return {"label": self.id2label[best], "score": weights[best] / sum(weights)}


def build_classifier() -> Classifier:
    accelerator = os.environ.get("ACCELERATOR", "cpu")
    model_dir = os.environ.get("MODEL_DIR")
    if accelerator == "neuron":
        import torch
        from transformers import AutoConfig, AutoTokenizer

        import modelstore

        target = os.environ.get("NEURON_TARGET", "")
        if not model_dir or target not in modelstore.COMPILERS:
            raise SystemExit("ACCELERATOR=neuron needs MODEL_DIR (a model store version) and NEURON_TARGET (inf1 or inf2)")
        # Importing the Neuron runtime registers its operators with TorchScript.
        __import__("torch_neuron" if modelstore.COMPILERS[target] == "torch-neuron" else "torch_neuronx")
        config = AutoConfig.from_pretrained(model_dir)
        return NeuronClassifier(
            torch.jit.load(os.path.join(model_dir, modelstore.COMPILED_DIR, target, modelstore.ARTIFACT)),
            AutoTokenizer.from_pretrained(model_dir),
            {int(k): v for k, v in config.id2label.items()},
        )
    from transformers import pipeline

    pipe = pipeline("sentiment-analysis", model=model_dir or os.environ.get("MODEL_ID", DEFAULT_MODEL), device=0 if accelerator == "nvidia" else -1)
    return lambda text: pipe(text, truncation=True)[0]


def wsgi() -> Flask:
    """Entry point for gunicorn: load the model once, then serve."""
    start_http_server(int(os.environ.get("METRICS_PORT", "9100")))
    return create_app(build_classifier())
