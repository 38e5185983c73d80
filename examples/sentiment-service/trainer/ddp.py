"""Trains a model with DistributedDataParallel, one torchrun process per worker, checkpointing to CHECKPOINT_DIR (EFS)
and publishing the result to the team's model store as OUTPUT_MODEL@OUTPUT_VERSION (MODEL_STORE).

The platform runs it as a Kubeflow Trainer TrainJob of N nodes; the Trainer gives torchrun its node count, processes
per node and rendezvous at the first node in PET_* variables, so the command stays `torchrun -m trainer.ddp`.

Every rank resumes from the newest complete checkpoint, so a TrainJob restarted after a spot interruption or a
preemption carries on from its last checkpoint. `train` takes any task: a model that maps inputs to class logits and
a dataset of (inputs, label) pairs; the default is a small classifier on a synthetic dataset from a fixed seed.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from trainer.finetune import publish_output

CHECKPOINT = re.compile(r"^step-(\d+)\.pt$")
Task = Callable[[], tuple[nn.Module, Dataset]]


def synthetic_task(samples: int = 512, features: int = 16, classes: int = 2) -> tuple[nn.Module, Dataset]:
    """A small MLP and a dataset labelled by a fixed random linear map: the same on every rank for a given seed."""
    inputs = torch.randn(samples, features)
    labels = (inputs @ torch.randn(features, classes)).argmax(dim=1)
    model = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, classes))
    return model, TensorDataset(inputs, labels)


def log(line: str) -> None:
    # One write per line: ranks sharing a stdout (torchrun runs them unbuffered) would interleave print's separate newline.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.pt"


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints by step; one still being written is a dot-file that does not match."""
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT.match(p.name)))


def latest_step(directory: Path) -> int:
    """The step of the newest complete checkpoint, 0 when there is none."""
    done = _checkpoints(directory)
    return done[-1][0] if done else 0


def save_atomically(obj: Any, path: Path) -> None:
    # Write then rename: a preemption mid-write leaves a partial file, never a truncated checkpoint or model.
    partial = path.with_name(f".{path.name}.partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Writes the checkpoint for `step` and removes all but the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    save_atomically(state, path)
    for _, old in _checkpoints(directory)[:-keep]:
        old.unlink()
    return path


def init_distributed(backend: Optional[str]) -> torch.device:
    """Joins the torchrun group: one GPU per process with NCCL when there is CUDA, else the CPU with gloo."""
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    return device


def resume(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> int:
    """Loads the newest complete checkpoint into every rank; returns its step, 0 when there is none."""
    # Rank 0 picks, so every rank loads the same one whatever its (NFS-cached) view of the directory.
    newest = torch.tensor(latest_step(directory) if dist.get_rank() == 0 else 0, device=device)
    dist.broadcast(newest, src=0)
    if not (step := int(newest)):
        return 0
    path = checkpoint_path(directory, step)
    state = torch.load(path, map_location=device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"rank {dist.get_rank()}/{dist.get_world_size()} resumed from {path.name} (epoch {state['epoch'] + 1}, step {step})")
    return step


def train(
    task: Task, device: torch.device, checkpoint_dir: Path, *, epochs: int, batch_size: int, lr: float, checkpoint_every: int, keep: int, seed: int
) -> nn.Module:
    """Trains the task's model on this rank's shard of its dataset; returns the trained model (not the DDP wrapper)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(seed)
    model, dataset = task()
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    step = resume(checkpoint_dir, model, optimizer, device)
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    steps_per_epoch = math.ceil(len(sampler) / batch_size)
    total = epochs * steps_per_epoch
    for epoch in range(step // steps_per_epoch, epochs):
        sampler.set_epoch(epoch)
        # On resume, skip the batches of this epoch the checkpoint already covers, without loading them.
        indices = list(sampler)[(step - epoch * steps_per_epoch) * batch_size :]
        loss_sum, batches = torch.zeros((), device=device), 0
        for inputs, labels in DataLoader(dataset, batch_size=batch_size, sampler=indices):
            loss = F.cross_entropy(ddp(inputs.to(device)), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            batches += 1
            step += 1
            if step % checkpoint_every == 0 or step == total:
                if rank == 0:
                    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step}
                    save_checkpoint(checkpoint_dir, step, state, keep)
                # No rank runs ahead of (or exits before) a checkpoint that is not yet on disk.
                dist.barrier()
        log(f"epoch {epoch + 1}/{epochs} rank {rank}/{world} samples {len(indices)} loss {loss_sum.item() / batches:.4f}")
        if rank == 0:
            # As `name=value`, which a Katib trial's metrics collector reads from stdout.
            log(f"loss={loss_sum.item() / batches:.4f}")
    return model


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="optimizer steps")
    parser.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backend", choices=["nccl", "gloo"], default=os.environ.get("DDP_BACKEND"), help="default: $DDP_BACKEND, else nccl with CUDA, else gloo"
    )
    args = parser.parse_args(argv)
    checkpoint_dir = Path(os.environ["CHECKPOINT_DIR"])

    device = init_distributed(args.backend)
    rank = dist.get_rank()
    model = train(
        synthetic_task,
        device,
        checkpoint_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        keep=args.keep,
        seed=args.seed,
    )
    # The other ranks are done: they need not wait while rank 0 copies the model into the store.
    dist.destroy_process_group()
    # A tuning trial declares no output: it reports its loss and publishes nothing.
    if rank == 0 and "OUTPUT_MODEL" in os.environ:
        final = checkpoint_dir / "final"
        final.mkdir(parents=True, exist_ok=True)
        save_atomically({k: v.cpu() for k, v in model.state_dict().items()}, final / "model.pt")
        publish_output(final)


if __name__ == "__main__":
    main()
