"""./setup on a copy of the project with stand-in virtualenvs: the Python check, progress per step, idempotence."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements.txt", "requirements-examples.txt", "requirements-checkov.txt", "requirements-pipelines.txt")


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """The setup script and its requirements, with virtualenvs whose pip only records what it was asked."""
    for name in ("setup", *REQUIREMENTS):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "synth.py").write_text("")
    for venv in (".venv", ".venv-checkov", ".venv-pipelines"):
        executable(tmp_path / venv / "bin" / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        executable(tmp_path / venv / "bin" / "pip", f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip.log"\n')
    return tmp_path


def run_setup(project: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(["./setup"], cwd=project, env={"PATH": "/usr/bin:/bin", "PYTHON": python}, capture_output=True, text=True, timeout=60)


def test_setup_reports_each_step_and_skips_what_is_installed(project):
    first = run_setup(project)
    assert first.returncode == 0, first.stdout + first.stderr
    steps = first.stdout.splitlines()
    assert len(steps) == 9
    assert all(re.fullmatch(r"\[\d/9\] .+ \.\.\. done \(\d+\.\ds(, .+)?\)", s) for s in steps), steps
    assert steps[0].endswith(", 3.11)")
    installs = (project / "pip.log").read_text().splitlines()
    assert [line.split()[-1] for line in installs] == list(REQUIREMENTS)

    second = run_setup(project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sum(s.endswith(", up to date)") for s in second.stdout.splitlines()) == 4
    assert (project / "pip.log").read_text().splitlines() == installs, "nothing installed twice"

    (project / "requirements.txt").write_text((project / "requirements.txt").read_text() + "\n")
    run_setup(project)
    assert (project / "pip.log").read_text().splitlines()[len(installs):] == [installs[0]], "a changed file is installed again"


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_setup_refuses_another_python_naming_the_supported_one(project, version):
    other = executable(project / "bin" / f"python{version}", f"#!/bin/sh\necho {version}\n")
    proc = run_setup(project, str(other))
    assert proc.returncode == 2
    assert f"error: ./setup needs Python 3.11 (what CI tests the pinned requirements on); {other} is {version}." in proc.stderr
    assert "PYTHON=/path/to/python3.11 ./setup" in proc.stderr
    assert not (project / "pip.log").exists()


def test_setup_names_a_virtualenv_of_another_python(project):
    executable(project / ".venv" / "bin" / "python", "#!/bin/sh\necho 3.10\n")
    proc = run_setup(project)
    assert proc.returncode == 2
    assert "error: .venv runs Python 3.10, not 3.11; remove it (rm -rf .venv) and run ./setup again" in proc.stderr


def test_ci_runs_the_supported_python():
    workflows = "".join(p.read_text() for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    supported = re.search(r"^SUPPORTED=(\S+)$", (ROOT / "setup").read_text(), re.M).group(1)
    assert set(re.findall(r'python-version: "([\d.]+)"', workflows)) == {supported}
