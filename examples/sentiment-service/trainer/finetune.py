"""Fine-tunes the sentiment model on a dataset from DATA_DIR, checkpointing to CHECKPOINT_DIR (EFS), into
CHECKPOINT_DIR/final; with OUTPUT_MODEL set, publishes it to the team's model store as OUTPUT_MODEL@OUTPUT_VERSION (MODEL_STORE).

A preempted or failed run resumes from its newest checkpoint instead of starting over.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Optional

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(directory: Path) -> Optional[Path]:
    """The checkpoint with the highest step that finished writing (has trainer_state.json)."""
    if not directory.is_dir():
        return None
    done = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT.match(p.name)) and (p / "trainer_state.json").exists()]
    return max(done)[1] if done else None


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default=os.environ.get("BASE_MODEL", "distilbert-base-uncased"))
    args = parser.parse_args(argv)
    data_dir, checkpoint_dir = Path(os.environ["DATA_DIR"]), Path(os.environ["CHECKPOINT_DIR"])

    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = load_from_disk(str(data_dir)).map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(checkpoint_dir),
            num_train_epochs=args.epochs,
            save_strategy="steps",
            save_steps=500,
            save_total_limit=3,
            per_device_train_batch_size=32,
            report_to=[],
        ),
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("validation"),
        processing_class=tokenizer,  # transformers 5 removed the tokenizer argument
    )
    resume = latest_checkpoint(checkpoint_dir)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = checkpoint_dir / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    # A pipeline evaluates the candidate before it publishes it (examples/pipelines); a training workload publishes here.
    if os.environ.get("OUTPUT_MODEL"):
        publish_output(final)


def publish_output(final: Path) -> None:
    """Publishes the trained model as the workload's declared output version (immutable once published)."""
    import modelstore

    modelstore.publish(
        Path(os.environ["MODEL_STORE"]),
        os.environ["OUTPUT_MODEL"],
        os.environ["OUTPUT_VERSION"],
        final,
        "pytorch",
        {"job": os.environ.get("JOB_NAME", "unknown")},
    )


if __name__ == "__main__":
    main()
