"""The DDP trainer with two gloo ranks on loopback: they train their shards, checkpoint, resume after a preemption
where they left off, and rank 0 publishes the model to the store.

The ranks are forked from this process, each given the environment torchrun gives a worker. Launching
`torchrun -m trainer.ddp` instead costs each process its own torch import, ~15 s per run on a 2-CPU runner.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from modelstore import read_manifest
from trainer import ddp
from trainer.ddp import checkpoint_path, latest_step, save_checkpoint

EPOCH = re.compile(r"^epoch (\d+)/2 rank (\d)/2 samples (\d+) loss (\d+\.\d+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(local_rank: int, port: int, checkpoints: Path, store: Path) -> None:
    """One rank with the environment torchrun and the TrainJob give it."""
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        CHECKPOINT_DIR=str(checkpoints), MODEL_STORE=str(store), OUTPUT_MODEL="sentiment-ddp", OUTPUT_VERSION="1", JOB_NAME="nlp/sentiment-ddp",
        GLOO_SOCKET_IFNAME="lo",  # loopback, whatever the hostname resolves to
    )
    # One thread per rank: the ranks share the runner's CPUs, and OpenMP thread pools do not survive a fork.
    torch.set_num_threads(1)
    ddp.main(["--epochs", "2", "--batch-size", "32", "--checkpoint-every", "5"])


def run_job(capfd, checkpoints: Path, store: Path) -> str:
    """Runs two ranks to completion and returns their output; the synthetic task has 8 steps per epoch."""
    # DDP imports torch._dynamo on construction, which takes seconds: once here, not in each rank.
    import torch._dynamo  # noqa: F401

    capfd.readouterr()
    ranks = mp.start_processes(worker, args=(free_port(), checkpoints, store), nprocs=2, start_method="fork", join=False)
    deadline = time.monotonic() + 60
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            raise TimeoutError("the ranks did not finish within 60 s")
    return capfd.readouterr().out


def epochs(output: str) -> dict[tuple[int, int], tuple[int, float]]:
    """(epoch, rank) -> (samples, mean loss) from the per-epoch log lines."""
    return {(int(e), int(r)): (int(n), float(loss)) for e, r, n, loss in EPOCH.findall(output)}


def test_two_ranks_train_checkpoint_resume_after_a_preemption_and_publish(tmp_path, capfd):
    checkpoints, store = tmp_path / "checkpoints", tmp_path / "store"
    output = run_job(capfd, checkpoints, store)
    first = epochs(output)
    # Rank 0 reports each epoch's loss as `name=value`, the format Katib's StdOut metrics collector reads by default.
    assert [float(v) for v in re.findall(r"^loss=(\d+\.\d+)$", output, re.MULTILINE)] == [first[1, 0][1], first[2, 0][1]]
    # 512 samples, 256 per rank: both ranks trained both epochs, and learned.
    assert sorted(first) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(samples == 256 for samples, _ in first.values())
    for rank in (0, 1):
        assert first[2, rank][1] < first[1, rank][1]
    # A checkpoint every 5 steps and at the end (16), the newest 3 kept.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["final", "step-00000010.pt", "step-00000015.pt", "step-00000016.pt"]
    manifest = read_manifest(store, "sentiment-ddp", "1")
    assert set(manifest["files"]) == {"model.pt"} and manifest["framework"] == "pytorch" and manifest["source"] == {"job": "nlp/sentiment-ddp"}
    assert set(torch.load(store / "sentiment-ddp" / "1" / "model.pt")) == {"0.weight", "0.bias", "2.weight", "2.bias"}

    # What a preemption while step 15 was being written leaves: checkpoint 10, a partial 15, nothing published.
    (checkpoints / "step-00000015.pt").unlink()
    (checkpoints / "step-00000016.pt").unlink()
    shutil.rmtree(checkpoints / "final")
    (checkpoints / ".step-00000015.pt.partial").write_bytes(b"cut off")
    restarted = tmp_path / "store-after-restart"
    output = run_job(capfd, checkpoints, restarted)
    assert "rank 0/2 resumed from step-00000010.pt (epoch 2, step 10)" in output
    assert "rank 1/2 resumed from step-00000010.pt (epoch 2, step 10)" in output
    # Epoch 1 is not trained again, and epoch 2 goes on after its first 2 batches (64 samples per rank).
    assert sorted(second := epochs(output)) == [(2, 0), (2, 1)]
    assert all(samples == 256 - 64 for samples, _ in second.values())
    # Same weights, optimizer state and data order: the resumed run ends with exactly the uninterrupted run's model.
    assert read_manifest(restarted, "sentiment-ddp", "1")["sha256"] == manifest["sha256"]


def test_the_newest_complete_checkpoint_is_chosen(tmp_path):
    assert latest_step(tmp_path / "absent") == 0
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path, step, {"step": step}, keep=3)
    # A write cut off by a preemption is a dot-file, never taken for a checkpoint.
    (tmp_path / ".step-00000025.pt.partial").write_bytes(b"cut off")
    (tmp_path / "final").mkdir()
    assert latest_step(tmp_path) == 20
    assert torch.load(checkpoint_path(tmp_path, 20))["step"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step-00000025.pt.partial", "final", "step-00000010.pt", "step-00000015.pt", "step-00000020.pt"]
