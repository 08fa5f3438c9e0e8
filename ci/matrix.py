"""Run the test suite on every CPython from 3.10 to 3.13 found here, and on the lowest deps.

Each run gets its own virtualenv under ``.venv-matrix/`` (kept between runs, so a second
``make matrix`` only reinstalls when pyproject.toml or the constraints change). A Python
that is not installed is skipped with a line saying so; it never fails the run. One more run
uses the lowest Python found with ``ci/lowest.txt``: the lowest versions of watchtower,
boto3/botocore and structlog that pyproject.toml accepts.

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

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
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


def say(line: str) -> None:
    print(f"matrix: {line}", flush=True)


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
            [
                candidate,
                "-c",
                "import sys, platform; print(platform.python_implementation(),"
                " '%d.%d' % sys.version_info[:2])",
            ],
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


def prepare(name: str, python: str, constraints: Path | None) -> Path:
    """Create or refresh the virtualenv ``name`` with the package and its test extra."""
    venv = VENVS / name
    bin_python = venv / "bin" / "python"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    if constraints is not None:
        digest.update(constraints.read_bytes())
    stamp = venv / ".installed-stamp"
    if stamp.exists() and stamp.read_text() == digest.hexdigest() and bin_python.exists():
        return bin_python
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    install = [str(bin_python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"]
    if constraints is not None:
        install += ["-c", str(constraints)]
    subprocess.run(install, check=True, cwd=ROOT)
    stamp.write_text(digest.hexdigest())
    return bin_python


def run(name: str, python: str, constraints: Path | None) -> bool:
    started = time.monotonic()
    say(f"{name}: installing into {VENVS.name}/{name} ({python})")
    try:
        bin_python = prepare(name, python, constraints)
    except subprocess.CalledProcessError as exc:
        say(f"{name}: FAILED to install ({exc})")
        return False
    versions = subprocess.run(
        [
            str(bin_python),
            "-c",
            "from importlib.metadata import version as v; print(' '.join("
            "f'{n}={v(n)}' for n in ('watchtower', 'boto3', 'botocore', 'structlog', 'moto')))",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    say(f"{name}: running the suite with {versions}")
    result = subprocess.run([str(bin_python), *PYTEST], cwd=ROOT, check=False)
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
        python = found[version]
        if python is None:
            say(f"py{version}: not installed here, skipped")
            outcomes[f"py{version}"] = "skipped"
            continue
        outcomes[f"py{version}"] = "passed" if run(f"py{version}", python, None) else "FAILED"
    if "lowest" in wanted:
        lowest = next((found[v] for v in VERSIONS if found[v]), None)
        if lowest is None:
            say("lowest: no Python from 3.10 to 3.13 found, skipped")
            outcomes["lowest"] = "skipped"
        else:
            ok = run("lowest", lowest, LOWEST)
            outcomes["lowest"] = "passed" if ok else "FAILED"
    say("summary: " + ", ".join(f"{name} {outcome}" for name, outcome in outcomes.items()))
    say(f"total {time.monotonic() - started:.0f} s")
    return 1 if "FAILED" in outcomes.values() else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:]))
