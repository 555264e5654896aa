"""The core stays pure: no adapter, no SQL, no I/O module imported by movecar_core."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "movecar_core"
FORBIDDEN = {
    "movecar_adapters",
    "adapters",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "pymysql",
    "sqlite3",
    "socket",
    "requests",
    "urllib",
    "http",
    "smtplib",
    "subprocess",
    "chinese_calendar",
    "cryptography",
    # The simulator's charts and progress bar are adapters' (the simulate extra).
    "matplotlib",
    "rich",
}
#: (module, imported name) pairs allowed as deferred imports inside a function.
DEFERRED_ALLOWED: set[tuple[str, str]] = set()


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level?) for each import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def test_core_imports_no_adapter_and_no_io() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for name, module_level in imports(path):
            if name not in FORBIDDEN:
                continue
            if not module_level and (path.name, name) in DEFERRED_ALLOWED:
                continue
            offenders.append(f"{path.relative_to(CORE)} imports {name}")
    assert offenders == []


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_core_names_no_adapter_module_in_code() -> None:
    """Not by import, and not by a string handed to importlib (docs may point the way)."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and "movecar_adapters" in node.value
            ):
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno}")
    assert offenders == []


def test_core_does_not_read_the_wall_clock() -> None:
    offenders = [
        str(p.relative_to(CORE))
        for p in CORE.rglob("*.py")
        if any(
            s in p.read_text(encoding="utf-8") for s in ("datetime.now(", ".today()", "time.time(")
        )
    ]
    assert offenders == []
