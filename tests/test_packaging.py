"""The package as a user gets it: a wheel built from this tree, in an empty virtualenv.

pip reaches only the configured package indexes; the README's first example then runs
against the fake AWS served by this test process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REGION
from tests.test_examples import README, read_with
from watchtower_refresh.testing import FakeAWS

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
@pytest.mark.wheel
def test_wheel_in_an_empty_virtualenv_runs_the_readme_example(aws: FakeAWS, tmp_path: Path) -> None:
    # Built with this environment's hatchling: tests/test_examples.py builds one in isolation.
    wheel_options: list[str | Path] = ["--no-deps", "--no-build-isolation", "-q", "-w", tmp_path]
    run(sys.executable, "-m", "pip", "wheel", *wheel_options, ROOT, cwd=ROOT)
    (wheel,) = tmp_path.glob("watchtower_refresh-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert "watchtower_refresh/testing.py" in names
    assert "watchtower_refresh/py.typed" in names
    assert any(re.search(r"\.dist-info/licenses/LICENSE$", name) for name in names)
    assert not [name for name in names if name.startswith(("tests/", "examples/", "ci/"))]
    text = metadata.decode()
    assert "Requires-Dist: watchtower<4,>=3.4" in text
    assert "Classifier: Programming Language :: Python :: 3.10" in text

    env_dir = tmp_path / "venv"
    venv.create(env_dir)  # no pip of its own to install: this pip installs into it (--python)
    python = env_dir / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-compile",
        wheel,
        cwd=tmp_path,
    )
    # Nothing of this checkout on the path: the installed package, and its dependencies only.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(aws.environment(REGION))
    where = run(
        python,
        "-c",
        "import watchtower_refresh; print(watchtower_refresh.__file__)",
        cwd=tmp_path,
        env=env,
    )
    assert where.startswith(str(env_dir))

    assert "usage: watchtower-refresh" in run(
        env_dir / "bin" / "watchtower-refresh", "--help", cwd=tmp_path, env=env
    )

    first = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert first is not None
    example = tmp_path / "readme_example.py"
    example.write_text(first.group(1))
    run(python, example, cwd=tmp_path, env=env)
    assert read_with(aws, "/app/orders", "eu-west-1") == ["order 1042 placed"]
    assert aws.injector.counts["AssumeRole"] == 1

    # Without the extras: one line naming the extra, not a traceback.
    demo = subprocess.run(
        [env_dir / "bin" / "watchtower-refresh", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 3
    assert demo.stderr == (
        "watchtower-refresh demo: needs the demo extra: pip install 'watchtower-refresh[demo]'\n"
    )
    missing = subprocess.run(
        [python, "-c", "import watchtower_refresh.testing"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "pip install 'watchtower-refresh[testing]'" in missing.stderr


def test_python_versions_agree_everywhere() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.10"' in pyproject
    for minor in (10, 11, 12, 13, 14):
        assert f'"Programming Language :: Python :: 3.{minor}"' in pyproject
    readme, makefile = (ROOT / "README.md").read_text(), (ROOT / "Makefile").read_text()
    assert "Python 3.10+" in readme
    assert "Python 3.10+" in makefile
    assert not re.search(r"3\.1[1-9]\+", readme + makefile)
    matrix = (ROOT / "ci" / "matrix.py").read_text()
    assert 'VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")' in matrix
