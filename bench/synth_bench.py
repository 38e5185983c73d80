"""Wall time and peak memory of a synth, each in a fresh process.

    .venv/bin/python bench/synth_bench.py [--stacks dev prod] [--repeat 3]
    .venv/bin/python bench/synth_bench.py --workloads 1 200     # dev with N serving workloads
    .venv/bin/python bench/synth_bench.py --write docs/reference/benchmarks.md   # both, recorded for the docs

Targets (2 cores): prod under 3 s and 400 MB; 200 workloads under 4 times the 1-workload time.
Warm runs: the project's bytecode compiled first, as Python caches it on a first run (with PYTHONDONTWRITEBYTECODE
set it never is, and every run compiles the project's modules again: about 0.15 s more).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def measure(stack: str, out: Path, config: Path | None = None) -> tuple[float, float, int]:
    """Returns (seconds, peak MiB, exit code) of one `python -m infra.synth` process writing into `out`."""
    cmd = [sys.executable, "-m", "infra.synth", "--stack", stack, "--out", str(out)]
    if config:
        cmd += ["--config", str(config)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def warm_runs(stack: str, repeat: int, config: Path | None = None) -> list[tuple[float, float, int]]:
    """`repeat` timed runs after an untimed one, into one output folder: warm, as a developer re-runs the synth
    (render and parse caches filled, the previous run's artefacts in place)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / stack
        measure(stack, out, config)
        return [measure(stack, out, config) for _ in range(repeat)]


def stack_with_workloads(n: int, directory: Path) -> Path:
    """The dev stack with n CPU serving workloads in place of its examples."""
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    doc["config"]["ml-platform:workloads"] = [
        {
            "name": f"model-{i:03d}",
            "kind": "serving",
            "team": "nlp",
            "image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/sentiment-service:1.0.0",
            "resources": {"cpu": "500m", "memoryGib": 1},
            "port": 5000,
            "path": f"/model-{i:03d}",
            "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
        }
        for i in range(n)
    ]
    path = directory / f"Pulumi.dev-{n}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stacks_table(stacks: list[str], repeat: int) -> list[str]:
    lines = [f"{'stack':<10}{'best s':>8}{'median s':>10}{'worst s':>9}{'peak MiB':>10}{'exit':>6}"]
    for stack in stacks:
        runs = warm_runs(stack, repeat)
        seconds = sorted(r[0] for r in runs)
        lines.append(f"{stack:<10}{seconds[0]:>8.2f}{statistics.median(seconds):>10.2f}{seconds[-1]:>9.2f}"
                     f"{max(r[1] for r in runs):>10.0f}{runs[-1][2]:>6}")
    return lines


def workloads_table(counts: list[int], repeat: int) -> list[str]:
    lines = [f"{'workloads':<10}{'best s':>8}{'peak MiB':>10}{'exit':>6}"]
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            config = stack_with_workloads(n, Path(tmp))
            runs = warm_runs("dev", repeat, config)
            best[n] = min(r[0] for r in runs)
            lines.append(f"{n:<10}{best[n]:>8.2f}{max(r[1] for r in runs):>10.0f}{runs[-1][2]:>6}")
    low, high = min(best), max(best)
    lines.append(f"ratio {high} / {low} workloads: {best[high] / best[low]:.2f}")
    return lines


def record(path: Path, stacks: list[str], repeat: int) -> None:
    """Measures both benchmarks and writes them, with when and where, as the docs' source for synth timings."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    body = [
        "# Synth benchmarks",
        "",
        f"Written by `.venv/bin/python bench/synth_bench.py --write {path.relative_to(ROOT)}` on "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, commit {commit}, {os.cpu_count()} cores, {repeat} warm runs each",
        "(after an untimed one into the same output folder, as a developer re-runs the synth; the project's bytecode",
        "compiled, as Python caches it unless PYTHONDONTWRITEBYTECODE is set).",
        "Targets: prod under 3 s and 400 MB (on the machine the target was set on); 200 serving workloads in under",
        "4 times the 1-workload time. Timings depend on the machine and its load: compare runs made together.",
        "",
        "```",
        *stacks_table(stacks, repeat),
        "",
        *workloads_table([1, 200], repeat),
        "```",
        "",
    ]
    path.write_text("\n".join(body))


def compile_project() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "__main__.py", "infra", "components", "policies"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", nargs="+", default=["dev", "staging", "prod"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", type=int, help="synthesize dev with these numbers of serving workloads")
    parser.add_argument("--write", type=Path, help="run both benchmarks and record them in this markdown file")
    args = parser.parse_args()
    compile_project()
    if args.write:
        record(args.write.resolve(), args.stacks, args.repeat)
    else:
        print("\n".join(workloads_table(args.workloads, args.repeat) if args.workloads else stacks_table(args.stacks, args.repeat)))


if __name__ == "__main__":
    main()
