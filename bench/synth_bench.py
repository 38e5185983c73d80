"""Wall time and peak memory of a synth of each shipped stack, each in a fresh process.

    .venv/bin/python bench/synth_bench.py [--stacks dev prod] [--repeat 3]

Target (prod, 2 cores): under 5 s and under 400 MB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(stack: str, config: Path | None = None) -> tuple[float, float, int]:
    """Returns (seconds, peak MiB, exit code) of one `python -m infra.synth` process."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "infra.synth", "--stack", stack, "--out", out]
        if config:
            cmd += ["--config", str(config)]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", nargs="+", default=["dev", "staging", "prod"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'stack':<10}{'best s':>8}{'worst s':>9}{'peak MiB':>10}{'exit':>6}")
    for stack in args.stacks:
        runs = [measure(stack) for _ in range(args.repeat)]
        print(f"{stack:<10}{min(r[0] for r in runs):>8.2f}{max(r[0] for r in runs):>9.2f}"
              f"{max(r[1] for r in runs):>10.0f}{runs[-1][2]:>6}")


if __name__ == "__main__":
    main()
