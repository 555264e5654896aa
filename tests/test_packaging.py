"""The wheel installs exactly ``movecar_core`` and ``movecar_adapters``, beside a host's own
``adapters`` package, in a fresh virtual environment."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build_wheel(out: Path) -> Path:
    path = ROOT / "scripts" / "wheelbuild.py"
    spec = importlib.util.spec_from_file_location("movecar_wheelbuild", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: Path = module.build_wheel(out)
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_has_two_top_level_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"movecar_core", "movecar_adapters"}
    # Every package folder of the source tree is in the wheel, with its typing marker.
    for init in (ROOT / "adapters").rglob("__init__.py"):
        relative = init.relative_to(ROOT / "adapters").as_posix()
        assert f"movecar_adapters/{relative}" in names
    assert "movecar_adapters/py.typed" in names
    assert "movecar_core/py.typed" in names
    assert "movecar_adapters/sql/migrations/script.py.mako" in names


@pytest.mark.slow
def test_installs_next_to_a_host_package_named_adapters(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    host = tmp_path / "host"
    (host / "adapters").mkdir(parents=True)
    (host / "adapters" / "__init__.py").write_text('WHO = "the host\'s adapters"\n')
    program = (
        "import adapters, movecar_core, movecar_adapters.clock, movecar_core.memory\n"
        "from movecar_core import MoveCar\n"
        "mc = MoveCar.in_memory(owners={'苏D12345': '13912345678'})\n"
        "case = mc.open_case(plate='苏D12345', location='湖塘', requester_phone='13800001111')\n"
        "print(adapters.WHO, '|', movecar_adapters.__name__, '|', mc.case(case).state)\n"
    )
    done = subprocess.run(
        [str(python), "-c", program],
        cwd=host,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the host's adapters | movecar_adapters | received"
    # The console script works on the core install alone (no SQL extra).
    demo = subprocess.run(
        [str(env / "bin" / "movecar"), "demo"],
        cwd=host,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.count("\ncase ") == 5


def test_the_type_check_covers_both_installed_packages() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    packages = {p.strip() for p in config["mypy"]["packages"].split(",")}
    assert packages == {"movecar_core", "movecar_adapters"}
    assert config["mypy"].getboolean("strict")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python scripts/typecheck.py" in ci


def test_the_wheel_registers_the_test_kit_with_hypothesis(wheel: Path) -> None:
    """Hypothesis finds the kit through the installed distribution's entry points."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        points = configparser.ConfigParser()
        points.read_string(archive.read(name).decode())
    target = points["hypothesis"]["movecar"]
    assert target == "movecar_core.testing.hypothesis_plugin:_hypothesis_setup_hook"
