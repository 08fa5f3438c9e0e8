"""Run the test suite on every CPython from 3.10 to 3.14 found here, and on the lowest deps.

Each run gets its own virtualenv under ``.venv-matrix/`` (kept between runs, so a second
``make matrix`` only reinstalls when pyproject.toml or the constraints change). A Python
that is not installed is skipped with a line saying so; it never fails the run. CPython 3.14,
when neither pyenv nor PATH has it, comes from ``../shared/tools/python3.14`` (beside the
checkout; ``PY314_TOOL`` names another path): it runs 3.14 from a Debian
root it makes once and needs root; its virtualenv lives inside the checkout, which the tool
mounts at the same path, and every command in it runs through ``python3.14 --run``. One more
run uses the lowest Python from 3.10 to 3.13 found with ``ci/lowest.txt``: the lowest
versions of watchtower, boto3/botocore and structlog that pyproject.toml accepts.

Usage: python3 ci/matrix.py [3.10 3.12 ... | lowest]   (default: every version, then lowest)
Exit code: 0 when every run that could start passed, 1 otherwise.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# The lowest-dependencies run takes the lowest of these that is installed.
LOWEST_VERSIONS = VERSIONS[:4]
PY314_TOOL = Path(os.environ.get("PY314_TOOL", ROOT.parent / "shared/tools/python3.14"))
LOWEST = ROOT / "ci" / "lowest.txt"
VENVS = ROOT / ".venv-matrix"
# The suite without coverage: the floor is make test's; branches differ across versions.
# The wheel test (a minute of pip installs) and the slow tests (real servers, pools and
# Celery stopped by signals; the random-fault property test; SIGKILL runs) run in make
# test, once: here the rest of the suite, the exit and finalization cases included.
PYTEST = [
    "-m",
    "pytest",
    "-q",
    "--no-cov",
    "-p",
    "no:cacheprovider",
    "-m",
    "not wheel and not slow",
]


_PROBE = (
    "import sys, platform; print(platform.python_implementation(), '%d.%d' % sys.version_info[:2])"
)


class Interpreter(NamedTuple):
    """How to run one CPython: ``python`` starts it; ``wrap`` prefixes a program of its venv."""

    python: list[str]
    wrap: list[str]

    def describe(self) -> str:
        return " ".join(self.python)


def say(line: str) -> None:
    print(f"matrix: {line}", flush=True)


def find_interpreter(version: str, python: str | None) -> tuple[Interpreter | None, str]:
    """The interpreter for ``version`` (``python`` if one was found), or None and why not."""
    if python is not None:
        return Interpreter([python], []), ""
    if version != "3.14":
        return None, "not installed here"
    return shared_python314()


def shared_python314() -> tuple[Interpreter | None, str]:
    """CPython 3.14 through the shared tool, or None and why it cannot be used here."""
    tool = str(PY314_TOOL)
    if not os.access(tool, os.X_OK):
        return None, f"not installed here, and no {tool}"
    if os.geteuid() != 0:
        return None, f"not installed here, and {tool} needs root"
    probe = subprocess.run(
        [tool, "-c", _PROBE], capture_output=True, text=True, cwd=ROOT, check=False
    )  # the first call makes the tool's Debian root (about 40 s)
    if probe.returncode != 0 or probe.stdout.split() != ["CPython", "3.14"]:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{tool} could not start it ({last})"
    return Interpreter([tool], [tool, "--run"]), ""


def find_python(version: str) -> str | None:
    """Path of a CPython ``version`` interpreter that runs, or None."""
    candidates = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        base = Path(root.stdout.strip() or Path.home() / ".pyenv") / "versions"
        installed = glob.glob(str(base / f"{version}.*" / "bin" / f"python{version}"))
        candidates += sorted(installed, key=_patch_level, reverse=True)
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", _PROBE],
            capture_output=True,
            text=True,
            check=False,
        )  # a pyenv shim for a version that is not selected fails here
        if probe.returncode == 0 and probe.stdout.split() == ["CPython", version]:
            return candidate
    return None


def _patch_level(path: str) -> int:
    name = Path(path).parent.parent.name  # 3.10.13
    tail = name.split(".")[2] if name.count(".") >= 2 else "0"
    return int(tail) if tail.isdigit() else -1


def prepare(name: str, python: Interpreter, constraints: Path | None) -> Path:
    """Create or refresh the virtualenv ``name`` with the package and its test extra."""
    venv = VENVS / name
    bin_python = venv / "bin" / "python"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    if constraints is not None:
        digest.update(constraints.read_bytes())
    stamp = venv / ".installed-stamp"
    # lexists: a venv of the shared 3.14 links to /usr/bin/python3.14 inside its root only.
    if stamp.exists() and stamp.read_text() == digest.hexdigest() and os.path.lexists(bin_python):
        return bin_python
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([*python.python, "-m", "venv", str(venv)], check=True, cwd=ROOT)
    pip = (str(bin_python), "-m", "pip", "install", "--quiet", "--no-compile")
    install = [*python.wrap, *pip, "-e", f"{ROOT}[test]"]
    if constraints is not None:
        install += ["-c", str(constraints)]
    subprocess.run(install, check=True, cwd=ROOT)
    stamp.write_text(digest.hexdigest())
    return bin_python


def run(name: str, python: Interpreter, constraints: Path | None) -> bool:
    started = time.monotonic()
    say(f"{name}: installing into {VENVS.name}/{name} ({python.describe()})")
    try:
        bin_python = prepare(name, python, constraints)
    except subprocess.CalledProcessError as exc:
        say(f"{name}: FAILED to install ({exc})")
        return False
    versions = subprocess.run(
        [
            *python.wrap,
            str(bin_python),
            "-c",
            "from importlib.metadata import version as v; print(' '.join("
            "f'{n}={v(n)}' for n in ('watchtower', 'boto3', 'botocore', 'structlog', 'moto')))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    say(f"{name}: running the suite with {versions}")
    result = subprocess.run([*python.wrap, str(bin_python), *PYTEST], cwd=ROOT, check=False)
    took = time.monotonic() - started
    verdict = "passed" if result.returncode == 0 else f"FAILED (pytest exit {result.returncode})"
    say(f"{name}: {verdict} in {took:.0f} s")
    return result.returncode == 0


def main(argv: list[str]) -> int:
    wanted = argv or [*VERSIONS, "lowest"]
    unknown = sorted(set(wanted) - {*VERSIONS, "lowest"})
    if unknown:
        say(f"unknown {unknown}; choose from {', '.join(VERSIONS)}, lowest")
        return 2
    started = time.monotonic()
    outcomes: dict[str, str] = {}
    found = {version: find_python(version) for version in VERSIONS}
    for version in (v for v in VERSIONS if v in wanted):
        python, why = find_interpreter(version, found[version])
        if python is None:
            say(f"py{version}: {why}, skipped")
            outcomes[f"py{version}"] = "skipped"
            continue
        outcomes[f"py{version}"] = "passed" if run(f"py{version}", python, None) else "FAILED"
    if "lowest" in wanted:
        lowest = next((found[v] for v in LOWEST_VERSIONS if found[v]), None)
        if lowest is None:
            say("lowest: no Python from 3.10 to 3.13 found, skipped")
            outcomes["lowest"] = "skipped"
        else:
            ok = run("lowest", Interpreter([lowest], []), LOWEST)
            outcomes["lowest"] = "passed" if ok else "FAILED"
    say("summary: " + ", ".join(f"{name} {outcome}" for name, outcome in outcomes.items()))
    say(f"total {time.monotonic() - started:.0f} s")
    return 1 if "FAILED" in outcomes.values() else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))
