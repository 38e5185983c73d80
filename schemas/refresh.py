"""Re-downloads every vendored upstream file in schemas/SOURCES.yaml at the pinned versions (infra/config/pins.py).

    .venv/bin/python schemas/refresh.py            # fetch all, report what changed
    .venv/bin/python schemas/refresh.py --dry-run  # list what would be fetched

Run after bumping a pin; the tests then show what the new version changed (a values key gone, a CRD field
renamed, a reference policy action added). Files are written exactly as upstream publishes them.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from infra.config.pins import PINS  # noqa: E402


LOCK = HERE / "VENDORED.yaml"


def planned() -> list[dict]:
    """Every vendored file for the current pins: destination, where it comes from and at which version."""
    files = []
    for entry in yaml.safe_load((HERE / "SOURCES.yaml").read_text()):
        version = PINS[entry["pin"]] if "pin" in entry else entry["version"]
        ref = entry["ref"].format(version=version)
        for dest, path in entry["files"].items():
            files.append(
                {
                    "file": dest.format(version=version),
                    "project": entry["project"],
                    "ref": ref,
                    "version": version,
                    "url": f"https://raw.githubusercontent.com/{entry['project']}/{ref}/{path}",
                }
            )
    return files


def lock_entry(item: dict) -> dict:
    return {
        "project": item["project"],
        "ref": item["ref"],
        "version": item["version"],
        "sha256": hashlib.sha256((HERE / item["file"]).read_bytes()).hexdigest(),
    }


def write_lock(items: list[dict]) -> None:
    header = "# Written by schemas/refresh.py: each vendored file, the upstream ref and version it was fetched at, its sha256.\n"
    LOCK.write_text(header + yaml.safe_dump({item["file"]: lock_entry(item) for item in items}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    items = planned()
    for item in items:
        dest = HERE / item["file"]
        print(f"{item['file']} <- {item['url']}")
        if args.dry_run:
            continue
        with urllib.request.urlopen(item["url"], timeout=60) as response:
            data = response.read()
        changed = not dest.exists() or dest.read_bytes() != data
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        print(f"  {'updated' if changed else 'unchanged'} ({len(data)} bytes)")
    if not args.dry_run:
        write_lock(items)
    wanted = {HERE / item["file"] for item in items}
    for stale in sorted(p for p in HERE.rglob("*") if p.is_file() and p.parent != HERE and p not in wanted):
        print(f"not vendored for the current pins any more (delete it): {stale.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
