"""Offline synth: runs the Pulumi program under the mock engine and writes reviewable artifacts.

    python -m infra.synth --stack dev [--out DIR] [--config FILE]

Exit status: 0 synthesized with no mandatory policy violation; 1 mandatory violations; 2 invalid
configuration. See DESIGN.md for the artifact contract.
"""
from __future__ import annotations

import gc

if __name__ == "__main__":
    # A one-shot process: no cyclic collection while the SDKs load either (see synthesize()).
    gc.disable()

import argparse
import asyncio
import datetime
import json
import os
import re
import runpy
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from infra.offline import cold_start, critical_path, helm_render
from infra.config import SECRET_KEYS
from policies.rules.base import HELM_RELEASE

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "ml-platform"


class SynthConfigError(Exception):
    """The stack file cannot be read or the program rejected its configuration."""


@dataclass
class SynthResult:
    stack: str
    resources: list[dict]
    outputs: dict
    manifests: dict[str, dict]
    helm: dict[str, dict]
    policy: dict
    graph: str
    placeholders: list[str]
    protected: list[str]
    transforms: dict[str, int]  # URN -> number of resource transforms registered with it
    lifecycle: dict[str, dict]  # URN -> its ignoreChanges, replaceOnChanges and deleteBeforeReplace, where set
    cost: dict
    critical_path: dict
    # Objects the Helm releases of vendored charts render to (infra/offline/helm_render.py), judged by the policy pack.
    rendered: list[dict] = field(default_factory=list)
    # The modelled time for a serving pod to become Ready on a fresh node, per pool (infra/offline/cold_start.py).
    cold_start: dict = field(default_factory=dict)

    @property
    def mandatory_violations(self) -> list[dict]:
        return [v for v in self.policy["violations"] if v["enforcement"] == "mandatory"]


# -- stack file -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackFile:
    bag: dict[str, str]  # as PULUMI_CONFIG carries it
    secret_keys: list[str]
    placeholders: list[str]  # secrets that are encrypted in the file, replaced offline by fakes
    unset: list[str]  # secrets the file leaves for the operator to set, replaced offline by fakes


def read_stack_file(path: Path, decrypted: Optional[dict[str, str]] = None) -> StackFile:
    """Reads a stack file as the engine would hand it to the program.

    `decrypted` maps a secret's key path to its value, as the engine hands decrypted secrets to the program;
    the other `secure:` entries get placeholders."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SynthConfigError(f"{path}: no such stack file") from None
    except yaml.YAMLError as exc:
        raise SynthConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise SynthConfigError(f"{path}: expected a mapping with a 'config:' mapping")
    bag, secret_keys, placeholders = {}, [], []
    config = doc.get("config") or {}
    for key, value in config.items():
        if not isinstance(key, str) or ":" not in key:
            raise SynthConfigError(f"{path}: config key {key!r} must be namespaced, like '{PROJECT}:network' or 'aws:region'")
        value, secret_paths = _replace_secure(value, key, decrypted or {})
        if key.removeprefix(f"{PROJECT}:") in SECRET_KEYS:
            plain = [p for p in _leaf_paths(config[key], key) if p not in secret_paths]
            if plain:
                raise SynthConfigError(
                    f"{path}: {', '.join(plain)} must be a secret: pulumi config set --secret --path '{plain[0]}' <value>"
                )
        if secret_paths:
            secret_keys.append(key)
            placeholders.extend(p for p in secret_paths if p not in (decrypted or {}))
        # The language host passes structured values as JSON and scalars as strings.
        if isinstance(value, (dict, list)):
            bag[key] = json.dumps(value)
        elif isinstance(value, bool):
            bag[key] = "true" if value else "false"
        else:
            bag[key] = str(value)
    unset = _offline_alerting_secrets(bag, secret_keys) + _offline_gitops_tokens(bag, secret_keys)
    return StackFile(bag, secret_keys, placeholders, unset)


def _leaf_paths(value: Any, path: str) -> list[str]:
    if isinstance(value, dict) and set(value) != {"secure"}:
        return [p for k, v in value.items() for p in _leaf_paths(v, f"{path}.{k}")]
    return [path]


def _offline_alerting_secrets(bag: dict[str, str], secret_keys: list[str]) -> list[str]:
    """Receivers whose credential the stack file leaves to the operator get a clearly fake one offline."""
    key, unset = f"{PROJECT}:alertingSecrets", []
    receivers = json.loads(bag.get(f"{PROJECT}:alerting", "{}")).get("receivers", [])
    secrets = json.loads(bag.get(key, "{}"))
    for r in receivers:
        if isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"] not in secrets:
            fake = f"offline-placeholder-for-{PROJECT}-alertingSecrets-{r['name']}"
            secrets[r["name"]] = fake if r.get("kind") == "pagerduty" else f"https://placeholder.invalid/{fake}"
            unset.append(f"{key}.{r['name']}")
    if secrets:
        bag[key] = json.dumps(secrets)
        if key not in secret_keys:
            secret_keys.append(key)
    return unset


def _offline_gitops_tokens(bag: dict[str, str], secret_keys: list[str]) -> list[str]:
    """Private team repositories whose token the stack file leaves to the operator get a clearly fake one offline."""
    key, unset = f"{PROJECT}:gitopsRepoTokens", []
    teams = json.loads(bag.get(f"{PROJECT}:gitops", "{}")).get("teams", {})
    tokens = json.loads(bag.get(key, "{}"))
    for team, spec in teams.items() if isinstance(teams, dict) else ():
        if isinstance(spec, dict) and spec.get("private") is True and team not in tokens:
            tokens[team] = f"offline-placeholder-for-{PROJECT}-gitopsRepoTokens-{team}"
            unset.append(f"{key}.{team}")
    if tokens:
        bag[key] = json.dumps(tokens)
        if key not in secret_keys:
            secret_keys.append(key)
    return unset


def _replace_secure(value: Any, path: str, decrypted: dict[str, str]) -> tuple[Any, list[str]]:
    """Swaps each `{secure: ...}` (encrypted by the stack's secrets provider, unreachable offline) for its
    decrypted value when given, else a placeholder; returns the paths of all of them."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return decrypted.get(path, f"offline-placeholder-for-{re.sub(r'[^a-zA-Z0-9]+', '-', path)}"), [path]
    if isinstance(value, dict):
        pairs = {k: _replace_secure(v, f"{path}.{k}", decrypted) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, [p for _, ps in pairs.values() for p in ps]
    if isinstance(value, list):
        pairs = [_replace_secure(v, f"{path}[{i}]", decrypted) for i, v in enumerate(value)]
        return [v for v, _ in pairs], [p for _, ps in pairs for p in ps]
    return value, []


# -- running the program ----------------------------------------------------------------------
def _run_program(stack: str, bag: dict[str, str], secret_keys: list[str]):
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.config import set_all_config

    from infra.config import ConfigError
    from infra.offline.mocks import SECRET_MARK, PlatformMocks, RecordingMonitor, redact, without_source_positions

    # Without a region the program stops at config validation; the mocks only need some name meanwhile.
    mocks = PlatformMocks(bag.get("aws:region") or "us-east-1")
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)
    set_all_config(bag, secret_keys)
    previous_env = {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")}
    os.environ["PULUMI_CONFIG"] = json.dumps(bag)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(secret_keys)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)

    exported: dict[str, Any] = {}
    config_error: list[ConfigError] = []

    async def resolve_exports() -> None:
        stack_resource = settings.get_root_resource()
        for key, value in sorted(stack_resource.outputs.items()):
            out = pulumi.Output.from_input(value)
            resolved = await out.future()
            exported[key] = SECRET_MARK if await out.is_secret() else redact(resolved)

    @pulumi.runtime.test
    def program():
        try:
            # What the Python language host does: run the project directory as a script.
            runpy.run_path(str(ROOT), run_name="__main__")
        except ConfigError as exc:
            config_error.append(exc)
            return None
        return asyncio.ensure_future(resolve_exports())

    saved_cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with without_source_positions():
            program()
    finally:
        os.chdir(saved_cwd)
        for k, v in previous_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if config_error:
        raise SynthConfigError(str(config_error[0]))
    return monitor.registrations, exported


# -- artifacts --------------------------------------------------------------------------------
def _resource_records(registrations) -> list[dict]:
    from infra.offline.mocks import redact

    records = []
    for urn in sorted(registrations):
        r = registrations[urn]
        records.append(
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "parent": r.parent,
                "custom": r.custom,
                "provider": r.provider,
                "dependencies": r.dependencies,
                "inputs": r.inputs if r.vendored else redact(r.inputs),
                "outputs": r.outputs if r.vendored else redact(r.outputs),
            }
        )
    return records


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def _manifests(records: list[dict]) -> dict[str, dict]:
    manifests = {}
    for r in records:
        if not r["type"].startswith("kubernetes:") or r["type"] == HELM_RELEASE or not r["custom"]:
            continue
        body = r["inputs"]
        meta = body.get("metadata", {})
        fname = f"{_slug(body['kind'])}--{_slug(meta.get('namespace') or 'cluster')}--{_slug(meta.get('name', r['name']))}.yaml"
        manifests[fname] = body
    return manifests


def _helm(records: list[dict]) -> dict[str, dict]:
    releases = {}
    for r in records:
        if r["type"] != HELM_RELEASE:
            continue
        i = r["inputs"]
        chart, repository = i.get("chart", ""), (i.get("repositoryOpts") or {}).get("repo")
        if chart.startswith("oci://"):
            repository, chart = chart.rsplit("/", 1)
        releases[f"{_slug(i.get('name', r['name']))}.yaml"] = {
            "name": i.get("name"),
            "chart": chart,
            "repository": repository,
            "version": i.get("version"),
            "namespace": i.get("namespace"),
            "values": i.get("values", {}),
        }
    return releases


def component_of(records: list[dict]) -> dict[str, Optional[str]]:
    """Maps each URN to its nearest ancestor of a platform component type (`ml-platform:*`)."""
    by_urn = {r["urn"]: r for r in records}
    owner: dict[str, Optional[str]] = {}
    for r in records:
        node: Optional[dict] = r
        while node is not None and not node["type"].startswith(f"{PROJECT}:"):
            node = by_urn.get(node["parent"])
        owner[r["urn"]] = node["urn"] if node else None
    return owner


def _graph(records: list[dict]) -> str:
    by_urn = {r["urn"]: r for r in records}
    owner = component_of(records)
    components = sorted({u for u in owner.values() if u}, key=lambda u: by_urn[u]["name"])
    edges = set()
    for r in records:
        a = owner[r["urn"]]
        for dep in r["dependencies"] + ([r["provider"]] if r["provider"] else []):
            b = owner.get(dep)
            if a and b and a != b:
                edges.add((by_urn[b]["name"], by_urn[a]["name"]))
    counts = Counter(owner[r["urn"]] for r in records if r["custom"])
    lines = ["flowchart TD"]
    for u in components:
        c = by_urn[u]
        lines.append(f'    {c["name"]}["{c["name"]}<br/>{c["type"].split(":")[-1]} · {counts[u]} resources"]')
    for src, dst in sorted(edges):
        lines.append(f"    {src} --> {dst}")
    return "\n".join(lines) + "\n"


# libyaml's emitter when the platform has it: same output, a fraction of the time.
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=YAML_DUMPER, sort_keys=True, default_flow_style=False, width=120)


_OBJECT = "\0object\0"


def _rendered_line(record: dict, object_json: str) -> str:
    """A chart-rendered record as one JSON line; its inputs and outputs, the same object, from its JSON."""
    if record["outputs"] is not record["inputs"]:
        return json.dumps(record, sort_keys=True)
    return json.dumps({**record, "inputs": _OBJECT, "outputs": _OBJECT}, sort_keys=True).replace(json.dumps(_OBJECT), object_json)


def artifact_files(result: SynthResult) -> dict[str, str]:
    """Each artefact's path under the output folder, and its text."""
    files: dict[str, str] = {}
    # One resource per line: diffs show which resources changed, and the C encoder keeps large stacks fast.
    lines = ",\n".join(f"    {json.dumps(r, sort_keys=True)}" for r in result.resources)
    # Chart-rendered objects are the bulk (CRDs): each is encoded once, for its line and its YAML's cache key.
    rendered_json = [json.dumps(r["inputs"], sort_keys=True) for r in result.rendered]
    rendered = ",\n".join(f"    {_rendered_line(r, text)}" for r, text in zip(result.rendered, rendered_json))
    files["resources.json"] = (
        "{\n"
        f'  "outputs": {json.dumps(result.outputs, indent=2, sort_keys=True)},\n'
        f'  "project": {json.dumps(PROJECT)},\n'
        f'  "chartRendered": [\n{rendered}\n  ],\n'
        f'  "resources": [\n{lines}\n  ],\n'
        f'  "stack": {json.dumps(result.stack)}\n'
        "}\n"
    )
    for fname, body in sorted(result.manifests.items()):
        files[f"manifests/{fname}"] = helm_render.cached_yaml(body, _dump_yaml)
    for fname, body in sorted(result.helm.items()):
        files[f"helm/{fname}"] = _dump_yaml(body)
    # One file per chart template, its documents in render order.
    templates: dict[str, list[str]] = defaultdict(list)
    for r, text in zip(result.rendered, rendered_json):
        release, template = r["chartRendered"]["release"], r["chartRendered"]["template"]
        templates[f"rendered/{release}/{template.split('/', 1)[1]}"].append("---\n" + helm_render.cached_yaml(r["inputs"], _dump_yaml, text))
    files.update((path, "".join(docs)) for path, docs in templates.items())
    files["policy.json"] = json.dumps(result.policy, indent=2, sort_keys=True) + "\n"
    files["graph.mmd"] = result.graph
    files["cost.json"] = json.dumps(result.cost, indent=2, sort_keys=True) + "\n"
    files["critical-path.json"] = json.dumps(result.critical_path, indent=2, sort_keys=True) + "\n"
    files["cold-start.json"] = json.dumps(result.cold_start, indent=2, sort_keys=True) + "\n"
    return files


def write_artifacts(result: SynthResult, out: Path) -> None:
    """Leaves `out` holding exactly the synth's artefacts. A file whose text is unchanged is left alone: creating
    hundreds of files costs several times more than comparing them, and unchanged artefacts keep their times."""
    files = artifact_files(result)
    if out.exists() and not out.is_dir():
        out.unlink()
    for path in sorted(out.rglob("*"), reverse=True) if out.exists() else []:
        rel = path.relative_to(out).as_posix()
        if path.is_symlink():
            path.unlink()  # written as a file of its own, never through the link
        elif path.is_dir():
            if not any(f.startswith(rel + "/") for f in files):
                shutil.rmtree(path)
        elif rel not in files:
            path.unlink()
    # The folders of the contract exist even when a stack has nothing to put in them.
    for folder in ("manifests", "helm"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = out / rel
        try:
            if path.read_text() == text:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- entry points -----------------------------------------------------------------------------
def synthesize(stack: str, config_file: Optional[Path] = None, decrypted: Optional[dict[str, str]] = None) -> SynthResult:
    from infra.offline.policy_check import check

    path = config_file or ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    stack_file = read_stack_file(path, decrypted)
    # The SDKs and the run allocate hundreds of thousands of long-lived objects: cyclic collection passes over
    # them cost a third of the run and free nothing. Reference counting still frees everything else.
    collecting = gc.isenabled()
    gc.disable()
    try:
        registrations, outputs = _run_program(stack, stack_file.bag, stack_file.secret_keys)
    finally:
        if collecting:
            gc.enable()
    records = _resource_records(registrations)
    cost = _cost(records)
    protected = sorted(urn for urn, r in registrations.items() if r.protect)
    try:
        rendered = helm_render.rendered_records(stack, records, helm_render.render_releases(records, stack))
    except (helm_render.ChartNotVendored, helm_render.RenderError) as exc:
        raise SynthConfigError(str(exc)) from exc
    policy = helm_render.apply_exceptions(check(records + rendered, stack, protected=set(protected)), rendered)
    # The pack judges the program's resources and the objects its charts render: counted apart, as the artefacts hold them.
    policy["summary"].update(resources=len(records), chartRendered=len(rendered))
    return SynthResult(
        stack=stack,
        resources=records,
        outputs=outputs,
        manifests=_manifests(records),
        helm=_helm(records),
        policy=policy,
        graph=_graph(records),
        placeholders=stack_file.placeholders + stack_file.unset,
        protected=protected,
        transforms={urn: r.transforms for urn, r in sorted(registrations.items()) if r.transforms},
        lifecycle={urn: r.lifecycle for urn, r in sorted(registrations.items()) if r.lifecycle},
        cost=cost,
        critical_path=critical_path.report(records),
        cold_start=cold_start.report(records),
        rendered=rendered,
    )


def _cost(records: list[dict]) -> dict:
    """The worst-case hourly cost of the graph, as the policy pack prices it (the program checked its budget)."""
    from policies.rules import cost

    pairs = [(r["type"], {**r["outputs"], **r["inputs"]}) for r in records]
    budget, region = cost.budget_settings(pairs)
    return cost.ceiling(pairs, region, datetime.date.today()).as_json(budget)


def _summary(result: SynthResult, out: Path, seconds: float) -> str:
    owner = component_of(result.resources)
    by_urn = {r["urn"]: r for r in result.resources}
    per_component = Counter(by_urn[o]["name"] if o else "(stack)" for u, o in owner.items() if by_urn[u]["custom"])
    # The same count as resources.json and policy.json: cloud and Kubernetes objects plus the components holding them.
    custom = sum(r["custom"] for r in result.resources)
    lines = [
        f"synthesized stack '{result.stack}' in {seconds:.1f}s: {len(result.resources)} resources "
        f"({custom} cloud and Kubernetes objects, {len(result.resources) - custom} components); objects per component:"
    ]
    lines += [f"  {name:<16} {n:>4}" for name, n in sorted(per_component.items())]
    lines.append(f"  manifests: {len(result.manifests)}, helm releases: {len(result.helm)}, chart-rendered objects: {len(result.rendered)}")
    if result.placeholders:
        lines.append(f"  note: secrets the offline synth cannot read (encrypted, or left for the operator to set) got fake placeholder values: {', '.join(result.placeholders)}")
    c = result.cost
    top = max(c["pools"].items(), key=lambda kv: kv[1]["hourlyUsd"], default=None)
    lines.append(
        f"cost ceiling: ${c['totalHourlyUsd']:,.2f}/h worst case (budget ${c['budgetHourlyUsd']:,.2f}/h; fixed ${c['fixedHourlyUsd']:,.2f}/h"
        + (f"; largest pool {top[0]} ${top[1]['hourlyUsd']:,.2f}/h" if top else "") + f"; prices {c['region']} {c['pricesDate']})"
    )
    up, down = result.critical_path["up"], result.critical_path["destroy"]
    lines.append(f"deploy time: up {up['minutes']} min from an empty account, destroy {down['minutes']} min (typical durations)")
    lines.append("  longest chain: " + " -> ".join(f"{step['name']} {step['seconds']}s" for step in up["chain"]))
    lines.append(cold_start.summary_line(result.cold_start))
    for r in result.critical_path["ranges"]:
        low, high = r["rangeMinutes"]
        lines.append(f"  note: {r['type']} counted {r['typicalMinutes']} min, reported {low}-{high}+ min: up likely up to {up['likelyUpToMinutes']} min")
    for o in result.critical_path["overTimeout"]:
        lines.append(f"  warning: {o['name']} ({o['type']}) typically takes {o['seconds']}s, beyond the engine's {o['limitSeconds']}s limit")
    if result.critical_path["unknownTypes"]:
        lines.append(f"  note: no typical duration for {', '.join(result.critical_path['unknownTypes'])}: counted {result.critical_path['defaultSeconds']}s each")
    s = result.policy["summary"]
    lines.append(
        f"policy: {s['mandatory']} mandatory, {s['advisory']} advisory violation(s) over {s['rules']} rules"
    )
    grouped = defaultdict(list)
    for v in result.policy["violations"]:
        grouped[(v["enforcement"], v["policy"])].append(v)
    for (level, rule), vs in sorted(grouped.items()):
        lines.append(f"  [{level}] {rule}: {vs[0]['message']}")
        lines.append(f"      at {vs[0]['urn']}" + (f" (+{len(vs) - 1} more)" if len(vs) > 1 else ""))
        if vs[0].get("remediation"):
            lines.append(f"      fix: {vs[0]['remediation']}")
    lines.append(f"artifacts: {out}/ (resources.json, manifests/, helm/, policy.json, graph.mmd, cost.json, critical-path.json, cold-start.json)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    from infra.offline.policy_check import MissingPolicyLevels, levels_file

    parser = argparse.ArgumentParser(prog="python -m infra.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name; reads stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, help="output folder (default build/<stack>, or build/<config file stem> with --config)")
    parser.add_argument("--config", type=Path, help="a stack config file to use instead of stacks/Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    # A config file of its own synthesizes beside the stack's artefacts, not over them.
    out = args.out or ROOT / "build" / (args.config.stem if args.config else args.stack)
    started = time.perf_counter()
    try:
        levels_file(args.stack)  # before the program runs: its levels decide the exit status
        result = synthesize(args.stack, args.config)
    except (SynthConfigError, MissingPolicyLevels) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_artifacts(result, out)
    print(_summary(result, out, time.perf_counter() - started))
    return 1 if result.mandatory_violations else 0


if __name__ == "__main__":
    status = main()
    if sys.getprofile() or sys.gettrace():
        sys.exit(status)  # a profiler or coverage writes its report at exit
    # A one-shot process: the interpreter's teardown of the SDKs' objects takes about a second and frees nothing
    # the system would not. Everything written is closed; flush what was printed, then leave.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
