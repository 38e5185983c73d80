"""Cold render of every release of a vendored chart (no cache), and the warm lookup, for one stack.

    .venv/bin/python bench/render_bench.py [--stack prod]

The synth caches renders by (chart digest, values hash) under build/.render-cache; CI starts cold.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.offline import helm_render  # noqa: E402
from infra.synth import _resource_records, _run_program, read_stack_file, ROOT  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    stack_file = read_stack_file(ROOT / "stacks" / f"Pulumi.{args.stack}.yaml")
    registrations, _ = _run_program(args.stack, stack_file.bag, stack_file.secret_keys)
    records = _resource_records(registrations)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        rendered = helm_render.render_releases(records, args.stack, Path(cache))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        helm_render.render_releases(records, args.stack, Path(cache))
        warm = time.perf_counter() - started
    objects = sum(len(docs) for r in rendered.values() for docs in r.objects.values())
    print(f"{args.stack}: {len(rendered)} releases, {objects} objects: cold {cold:.2f} s, warm {warm:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
