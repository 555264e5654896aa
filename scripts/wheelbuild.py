"""Build the project's wheel from a clean copy of the working tree.

``pip wheel .`` builds in place and setuptools keeps ``build/lib`` between runs, so a
module deleted from the tree would still ship. Building from a fresh copy (the working
tree as it is, committed or not, without build outputs, caches or the venv) gives the
wheel a user would get from this tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "site", "*.db", "*.db-wal", "*.db-shm", "node_modules",
)  # fmt: skip


class WheelBuildFailed(RuntimeError):
    """pip could not build the wheel (its last output is in the message)."""


def build_wheel(out: Path) -> Path:
    """Build the wheel into the folder ``out``; returns its path."""
    with tempfile.TemporaryDirectory(prefix="movecar-wheel-src-") as tmp:
        source = Path(tmp, "movecar")
        shutil.copytree(ROOT, source, ignore=_SKIP)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    found = sorted(out.glob("movecar-*.whl"))
    if done.returncode != 0 or len(found) != 1:
        raise WheelBuildFailed(f"building the wheel failed:\n{done.stderr[-2000:]}")
    return found[0]
