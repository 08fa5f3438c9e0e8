"""ci/matrix.py: a Python that is not installed is skipped with a line, never a failure."""

from __future__ import annotations

import importlib.util
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
