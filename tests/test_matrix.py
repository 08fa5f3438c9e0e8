"""ci/matrix.py: a Python that is not installed is skipped with a line, never a failure.

CPython 3.14 comes from the shared tool when the machine has none: its runs go through it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

MATRIX = Path(__file__).resolve().parent.parent / "ci" / "matrix.py"


def load_matrix() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_matrix", MATRIX)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_interpreters_are_skipped_with_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = load_matrix()
    monkeypatch.setattr(matrix.shutil, "which", lambda name: None)  # no pyenv, nothing on PATH
    assert matrix.find_python("3.12") is None
    assert matrix.main(["3.12", "lowest"]) == 0
    out = capsys.readouterr().out
    assert "matrix: py3.12: not installed here, skipped" in out
    assert "matrix: lowest: no Python from 3.10 to 3.13 found, skipped" in out


def test_an_interpreter_on_path_is_found_and_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = load_matrix()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    on_path = {f"python{version}": sys.executable, "python3.99": sys.executable}
    monkeypatch.setattr(matrix.shutil, "which", on_path.get)
    assert matrix.find_python(version) == sys.executable
    # A name that answers with another version (a stale shim, a symlink) is not taken.
    assert matrix.find_python("3.99") is None


def test_unknown_versions_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_matrix().main(["2.7"]) == 2
    assert "unknown ['2.7']" in capsys.readouterr().out


def test_lowest_pins_match_the_lower_bounds_in_pyproject() -> None:
    pins = dict(
        line.split("==")
        for line in (MATRIX.parent / "lowest.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    pyproject = (MATRIX.parent.parent / "pyproject.toml").read_text()
    for name, version in pins.items():
        lower = ".".join(version.split(".")[:2])
        assert f'"{name}>={lower}' in pyproject, name


def fake_tool(tmp_path: Path) -> Path:
    tool = tmp_path / "python3.14"
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    return tool


def test_python314_without_the_shared_tool_is_skipped_with_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    matrix = load_matrix()
    monkeypatch.setattr(matrix.shutil, "which", lambda name: None)
    monkeypatch.setattr(matrix, "PY314_TOOL", tmp_path / "missing" / "python3.14")
    assert matrix.main(["3.14"]) == 0
    out = capsys.readouterr().out
    assert f"matrix: py3.14: not installed here, and no {tmp_path}/missing/python3.14, skipped" in (
        out
    )
    assert "matrix: summary: py3.14 skipped" in out


def test_python314_through_the_shared_tool_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    matrix = load_matrix()
    monkeypatch.setattr(matrix.shutil, "which", lambda name: None)
    monkeypatch.setattr(matrix, "PY314_TOOL", fake_tool(tmp_path))
    monkeypatch.setattr(matrix.os, "geteuid", lambda: 1000)
    assert matrix.main(["3.14"]) == 0
    assert "python3.14 needs root, skipped" in capsys.readouterr().out


def test_python314_the_tool_cannot_start_is_skipped_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    matrix = load_matrix()
    monkeypatch.setattr(matrix.shutil, "which", lambda name: None)
    tool = tmp_path / "python3.14"
    tool.write_text("#!/bin/sh\necho 'python3.14: debootstrap failed; see the log' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setattr(matrix, "PY314_TOOL", tool)
    monkeypatch.setattr(matrix.os, "geteuid", lambda: 0)
    assert matrix.main(["3.14"]) == 0
    out = capsys.readouterr().out
    assert "could not start it (python3.14: debootstrap failed; see the log), skipped" in out


@pytest.mark.parametrize(("pytest_exit", "verdict", "code"), [(0, "passed", 0), (1, "FAILED", 1)])
def test_python314_runs_the_suite_through_the_shared_tool(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    pytest_exit: int,
    verdict: str,
    code: int,
) -> None:
    matrix = load_matrix()
    monkeypatch.setattr(matrix.shutil, "which", lambda name: None)
    tool = str(fake_tool(tmp_path))
    monkeypatch.setattr(matrix, "PY314_TOOL", Path(tool))
    monkeypatch.setattr(matrix.os, "geteuid", lambda: 0)
    monkeypatch.setattr(matrix, "VENVS", tmp_path / ".venv-matrix")
    calls: list[tuple[list[str], object]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append((argv, kwargs.get("cwd")))
        if argv[:2] == [tool, "-c"]:
            return subprocess.CompletedProcess(argv, 0, "CPython 3.14\n", "")
        if argv[1:3] == ["-m", "venv"]:
            Path(argv[3], "bin").mkdir(parents=True)
        returncode = pytest_exit if "pytest" in argv else 0
        return subprocess.CompletedProcess(argv, returncode, "", "")

    monkeypatch.setattr(matrix.subprocess, "run", fake_run)
    assert matrix.main(["3.14"]) == code
    assert f"matrix: py3.14: {verdict}" in capsys.readouterr().out
    venv_python = str(tmp_path / ".venv-matrix" / "py3.14" / "bin" / "python")
    commands = [argv for argv, _ in calls]
    # The venv is made by the tool's python3.14; everything in it runs through --run.
    assert [tool, "-m", "venv", str(tmp_path / ".venv-matrix" / "py3.14")] in commands
    ran = [argv for argv in commands if venv_python in argv]
    assert ran
    assert all(argv[:3] == [tool, "--run", venv_python] for argv in ran)
    assert any(argv[3:6] == ["-m", "pip", "install"] for argv in ran)
    assert any(argv[3:5] == ["-m", "pytest"] for argv in ran)
    # The tool mounts the current directory: every call runs from the checkout.
    assert {cwd for argv, cwd in calls if argv[0] == tool} == {matrix.ROOT}
