"""Type-check the package as it is installed: ``python scripts/typecheck.py [mypy args]``.

The folder ``adapters/`` installs as ``movecar_adapters`` (setuptools ``package_dir``), and
an editable install reaches it through an import hook that mypy cannot follow. So this
builds the wheel, unpacks it into a temporary folder and runs mypy (strict, the settings
of ``setup.cfg``) on the two packages exactly as a user gets them. Paths in mypy's report
are mapped back to the source tree. Exit status is mypy's (2 if the build fails).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from wheelbuild import WheelBuildFailed, build_wheel  # scripts/wheelbuild.py, beside this one

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("movecar_core", "movecar_adapters")
SOURCE = {"movecar_adapters/": "adapters/", "movecar_core/": "movecar_core/"}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="movecar-typecheck-") as tmp:
        try:
            wheel_path = build_wheel(Path(tmp, "wheel"))
        except WheelBuildFailed as exc:
            print(f"typecheck: {exc}", file=sys.stderr)
            return 2
        site = Path(tmp, "site")
        with zipfile.ZipFile(wheel_path) as wheel:
            wheel.extractall(site)
        tops = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
        if tops != set(PACKAGES):
            print(f"typecheck: the wheel installs {sorted(tops)}, not {PACKAGES}", file=sys.stderr)
            return 2
        args = ["--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(ROOT / ".mypy_cache")]
        for package in PACKAGES:
            args += ["-p", package]
        done = subprocess.run(
            [sys.executable, "-m", "mypy", *args, *argv],
            cwd=site,
            capture_output=True,
            text=True,
            check=False,
        )
        for stream, report in ((sys.stdout, done.stdout), (sys.stderr, done.stderr)):
            for installed, source in SOURCE.items():
                report = report.replace(installed, source)  # noqa: PLW2901 - mapped in place
            stream.write(report)
        return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
