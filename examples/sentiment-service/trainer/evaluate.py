"""Evaluates a candidate model on the validation split of the dataset in DATA_DIR and gates it: below
--min-accuracy the command fails, so a pipeline never publishes it. Writes its metrics as JSON to --metrics.

    python -m trainer.evaluate --model-dir DIR --min-accuracy 0.85 --metrics /tmp/outputs/metrics.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


def accuracy(predicted: Sequence[int], expected: Sequence[int]) -> float:
    if not expected or len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} labelled examples")
    return sum(p == e for p, e in zip(predicted, expected)) / len(expected)


def evaluate(model_dir: Path, data_dir: Path, split: str = "validation", batch_size: int = 64) -> dict:
    """Accuracy of the model's predicted labels over the split (the dataset's `text` and `label` columns)."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    examples = load_from_disk(str(data_dir))[split]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    predicted: list[int] = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            inputs = tokenizer(batch["text"], truncation=True, max_length=128, padding=True, return_tensors="pt")
            predicted += model(**inputs).logits.argmax(dim=-1).tolist()
    return {"accuracy": accuracy(predicted, list(examples["label"])), "examples": len(examples), "split": split}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "/data")))
    parser.add_argument("--split", default="validation")
    parser.add_argument("--min-accuracy", type=float, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args(argv)
    metrics = evaluate(args.model_dir, args.data_dir, args.split)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, sort_keys=True))
    print(f"accuracy {metrics['accuracy']:.4f} on {metrics['examples']} {args.split} examples (minimum {args.min_accuracy:g})", flush=True)
    if metrics["accuracy"] < args.min_accuracy:
        print(f"error: accuracy {metrics['accuracy']:.4f} is below the minimum {args.min_accuracy:g}: not publishing this candidate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
