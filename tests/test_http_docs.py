"""docs/http.md runs: every bash block (``bash -e``) and python block (``python``), in
order, against a live ``movecar serve`` on 127.0.0.1 whose owner data source is a mirror
table holding 苏D12345; and the ``console`` block that starts a server, as a newcomer
types it (its output line compared). tests/test_doc_blocks.py runs the page's ``toml``
and ``json`` blocks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from http_support import KEY, SECRET, TOKEN_SPEC, TOKENS
from test_http_serve import spawn

pytest.importorskip("uvicorn", reason="movecar serve needs the http extra")

DOC = Path(__file__).resolve().parent.parent / "docs" / "http.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_page_has_runnable_blocks() -> None:
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("bash") >= 8 and kinds.count("python") >= 3
    assert set(kinds) <= {"bash", "python", "console", "toml", "json"}


def test_the_console_block_starts_a_server_as_shown(tmp_path: Path) -> None:
    """Each ``$`` line of the page's console block, in a fresh folder with no MOVECAR_*
    set: the exports run as they are, ``movecar serve`` with ``--port 0`` added (the
    shown port may be taken on a test machine), and its first line is the one shown,
    but for the port. ``pip install`` is the suite's own install (.ci/run does it)."""
    (console,) = [code for kind, code in blocks() if kind == "console"]
    commands = [line[2:] for line in console.splitlines() if line.startswith("$ ")]
    shown = [line for line in console.splitlines() if line and not line.startswith("$ ")]
    assert commands[0].startswith("pip install ") and commands[-1].startswith("movecar serve")
    serve = commands[-1].split("#", 1)[0].strip() + " --port 0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = "\n".join([*commands[1:-1], f"exec {serve}"])
    served = spawn(["bash", "-e", "-c", script], tmp_path, env)
    try:
        expected = re.escape(shown[0]).replace("8114", "[0-9]+")
        assert re.fullmatch(expected, served.lines[-1].strip()), (served.lines, shown[0])
    finally:
        served.proc.terminate()
        assert served.proc.wait(30) == 0


def test_every_block_of_docs_http_runs_against_a_live_server(tmp_path: Path) -> None:
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is missing (.ci/run installs it)")
            pytest.skip(f"{tool} is not installed")
    env = os.environ | {
        "MOVECAR_KEYS": f"k1={KEY}",
        "MOVECAR_WEBHOOK_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("MOVECAR_DB_URL", "MOVECAR_CONFIG", "MOVECAR_API_TOKENS"):
        env.pop(name, None)
    (tmp_path / "tokens").write_text(TOKEN_SPEC + "\n")
    (tmp_path / "movecar.toml").write_text(
        '[registry]\nkind = "sql"\n[api]\ntokens_file = "tokens"\n'
    )
    (tmp_path / "owners.csv").write_text("plate,owner_phone\n苏D12345,13900001111\n")
    movecar = [sys.executable, "-m", "movecar_adapters.cli"]
    subprocess.run(
        [*movecar, "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    subprocess.run(
        [*movecar, "registry", "load-mirror", "--create", "owners.csv"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    served = spawn([*movecar, "serve", "--port", "0"], tmp_path, env)
    proc = served.proc
    try:
        run_env = env | {
            "MOVECAR_URL": served.url,
            "TOKEN_AGENT": TOKENS["agent"],
            "TOKEN_SUPERVISOR": TOKENS["supervisor"],
            "TOKEN_COMMAND_CENTRE": TOKENS["command_centre"],
            "TOKEN_AUDITOR": TOKENS["auditor"],
        }
        ran = 0
        for n, (kind, code) in enumerate(blocks(), start=1):
            if kind == "bash":
                command = ["bash", "-e", "-o", "pipefail", "-c", code]
            elif kind == "python":
                command = [sys.executable, "-c", code]
            else:
                continue
            done = subprocess.run(
                command,
                cwd=tmp_path,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (
                f"block {n} ({kind}) of docs/http.md failed:\n{code}\n--- stdout\n"
                f"{done.stdout}\n--- stderr\n{done.stderr}"
            )
            ran += 1
        assert ran >= 11
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
