"""The docs a host builds on: every error type documented with its exit code, the API
reference built from the docstrings, the state diagram current, help() readable."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import pydoc
import re
import sys
from pathlib import Path

import movecar_adapters
import movecar_core
from movecar_adapters.cli import exit_code
from movecar_core import WUJIN_114_2024, MoveCar
from movecar_core.errors import MoveCarError

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _error_types() -> dict[str, type[MoveCarError]]:
    found: dict[str, type[MoveCarError]] = {}
    for package in (movecar_core, movecar_adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in info.name or info.name.endswith(("bulk_child", "audit_child")):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and issubclass(value, MoveCarError)
                    and value.__module__ == module.__name__
                ):
                    found[value.__name__] = value
    return found


def test_every_error_type_is_documented_with_its_exit_code() -> None:
    table = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"^\| `(\w+)` \| .* \| (\d) \|$", (DOCS / "errors.md").read_text(), re.M
        )
    }
    errors = _error_types()
    assert set(errors) == set(table), "docs/errors.md lists exactly the library's errors"
    for name, cls in errors.items():
        assert int(exit_code(cls.__new__(cls))) == table[name], name


def test_help_of_the_engine_is_readable() -> None:
    assert len(repr(WUJIN_114_2024)) < 100
    text = pydoc.render_doc(MoveCar, renderer=pydoc.plaintext)
    assert "connect()" in text and "settle_month" in text
    assert len(text) < 20_000


def test_the_api_reference_covers_the_public_surface() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    for target in (
        "movecar_adapters.connect.connect",
        "movecar_core.app.MoveCar",
        "movecar_adapters.sql.store.SqlStore",
        "movecar_adapters.crypto.KeyRing",
        "movecar_adapters.worker",
        "movecar_core.ports",
        "movecar_core.errors",
    ):
        assert f"::: {target}" in api, target


def test_the_state_diagram_renders_on_the_site(tmp_path: Path) -> None:
    """The site's mermaid block is the machine's own diagram, and mermaid parses it."""
    import html
    import os
    import shutil
    import subprocess

    import pytest

    from movecar_core.machine import mermaid

    modules = os.environ.get("MOVECAR_TEST_MERMAID")
    if not modules:
        pytest.skip(
            "set MOVECAR_TEST_MERMAID to a node_modules folder with mermaid and jsdom "
            "(npm install --prefix DIR mermaid@11 jsdom@24; .ci/run does)"
        )
    node = shutil.which("node")
    assert node is not None, "MOVECAR_TEST_MERMAID is set but node is not installed"
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--site-dir", str(site)],
        cwd=DOCS.parent,
        check=True,
        capture_output=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    page = (site / "cases" / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<pre class="mermaid"><code>(.*?)</code></pre>', page, re.S)
    assert len(blocks) == 1
    diagram = html.unescape(blocks[0])

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    assert lines(diagram) == lines(mermaid())
    source = tmp_path / "machine.mmd"
    source.write_text(diagram, encoding="utf-8")
    done = subprocess.run(
        [node, str(Path(__file__).with_name("mermaid_parse.mjs")), str(source)],
        env={**os.environ, "NODE_PATH": modules},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
