"""Every fenced code block of README.md and docs/*.md is executed, page by page.

How a block runs is decided by its language (the word after the opening fence):

- ``python``: the blocks of one page run in order in one namespace, in a temporary folder
  as the working directory, with an environment holding no ``MOVECAR_*`` variable of the
  caller's (only what the page itself exports in an earlier shell block). A bare expression
  with a trailing comment that states a value (``unit_price(1_500_000)  # Decimal('1.85')``)
  is checked against that value. A few pages name objects an earlier paragraph describes
  (``mc``, ``case_id``, a recording file): :data:`SETUP` builds them, on the in-memory
  adapters or a SQLite file in the temporary folder.
- ``sh``/``bash``/``shell``: ``bash -e`` in the page's folder, the virtual environment's
  ``bin`` first on ``PATH``; what a block exports (``MOVECAR_*``) is seen by the page's later
  blocks. ``console``: each ``$ command`` runs the same way and its output must match the
  lines shown under it (``...`` stands for any text, as in doctest).
- ``toml``: accepted by the loader it belongs to, decided by its content: a year file of
  the calendar (``YearNotice.from_toml``), a scenario (``Scenario.from_toml``), a sweep grid
  (``grid_file_values``), else ``movecar.toml`` (``load_settings``). Absolute paths in a
  configuration are moved under the temporary folder, and the secret files it names
  (keys, SMTP password, TLS files) are created there, as a deployment has them.
- A block marked ``<!-- doc-test: file PATH -->`` is also written to PATH in the page's
  folder, for the blocks after it.
- ``json``: parsed. ``sql``: executed on SQLite. ``ini``: a systemd unit, parsed; its
  ``ExecStart`` is checked as a synopsis.
- ``mermaid``: the case machine's diagram equals ``movecar_core.machine.mermaid()``; the
  settlement's equals ``movecar_core.settlement.TRANSITIONS``.
- ``text``: never run by itself; it needs a marker on the line before the fence:
  ``<!-- doc-test: output -->`` (compared with what the block before it printed),
  ``<!-- doc-test: synopsis -->`` (every ``movecar ...`` line names a real command and only
  its options: checked against the CLI's own parser) or
  ``<!-- doc-test: layout -->`` (each line names a folder of the repository) or
  ``<!-- doc-test: illustration REASON -->`` (a diagram, a formula, a file layout).

What the suite itself changes, and why (each listed in :data:`SUBSTITUTE`):

- the install line (``python3 -m venv .venv && . .venv/bin/activate && pip install -e
  '.[all]' &&``) is what the environment running this test already did;
  tests/test_packaging.py installs the wheel into a fresh environment;
- ``python -m pytest`` (the suite this test belongs to) only collects;
- ``movecar simulate`` and ``movecar sweep`` (minutes for a year at 1.5 million calls) run
  with ``--volume 2000 --months 1`` appended (the last option wins), a sweep also with
  ``--seeds 1-2``, and ``--dask tcp://...`` (no cluster here) as ``--workers 2``: options
  docs/simulation.md shows; the README's quick start also with ``--store memory``, as
  docs/simulation.md runs the default SQLite store;
- a deployment's database host (``db.internal``) is a SQLite file in the folder.

Pages another test runs are named in :data:`EXECUTED_ELSEWHERE`.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import io
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent

#: Pages whose blocks another test executes (curl calls to a live `movecar serve`).
#: page -> (the test that runs some of its blocks, the languages it runs); this test runs
#: the page's other blocks.
EXECUTED_ELSEWHERE = {
    "http.md": ("tests/test_http_docs.py", frozenset({"bash", "python", "console"}))
}

LANGUAGES = {
    "python",
    "sh",
    "bash",
    "shell",
    "console",
    "toml",
    "json",
    "sql",
    "ini",
    "mermaid",
    "text",
}

#: Rewrites of a page's shell commands, as regular expressions (see the module's docstring).
SUBSTITUTE: dict[str, list[tuple[str, str]]] = {
    "*": [
        # The environment running this test is that install (test_packaging.py does it fresh).
        (r"python3 -m venv \.venv && \. \.venv/bin/activate && pip install -e '\.\[all\]' && ", ""),
        # Debian packages: .ci/run installs them (checked below).
        (r"(?m)^apt-get install .*$", ": installed by .ci/run"),
        (r"(?m)^pip install .*$", ": installed by the environment running this test"),
        # The suite this test belongs to: .ci/run runs it (checked below).
        (r"(?m)^(\S+=\S+ \\\n)*(python -m pytest|\.venv/bin/pytest)\b.*$", ": run by .ci/run"),
        # A month or a year of calls takes minutes: a small month, with options the pages show.
        (r"(?m)^(movecar (simulate|sweep)\b[^#\n]*?)\s*(#.*)?$", r"\1 --volume 2000 --months 1"),
        (r"(?m)^(movecar sweep\b.*)$", r"\1 --seeds 1-2"),
        (r"--dask tcp://\S+", "--workers 2"),  # no Dask cluster here: processes instead
    ],
    "README.md": [(r"(movecar simulate --volume 2000)", r"\1 --store memory")],
    "production.md": [  # the deployment's database server: a SQLite file
        (r"postgresql\+psycopg://movecar@db\.internal:5432/movecar", "sqlite:///movecar.db"),
    ],
}


@attrs.frozen
class Block:
    page: str
    line: int  # of the opening fence
    lang: str
    code: str
    marker: str  # the doc-test marker on the line before the fence, if any

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} [{self.lang or 'no language'}]"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^( *)```(\S*)\s*$", lines[i])  # indented: in a list item
        if opening:
            indent = len(opening.group(1))
            end = i + 1
            while end < len(lines) and not re.match(r"^ *```\s*$", lines[end]):
                end += 1
            marker = ""
            if i > 0:
                m = re.match(r"^ *<!-- doc-test: (.*?) -->$", lines[i - 1])
                marker = m.group(1) if m else ""
            code = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
            found.append(Block(path.name, i + 1, opening.group(2), code, marker))
            i = end
        i += 1
    return found


# ---------------------------------------------------------------------------- the page


class Page:
    """One page's run: its folder, environment, namespace and the last block's output."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MOVECAR_")}
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["VIRTUAL_ENV"] = str(BIN.parent)
        self.env.pop("PYTHONPATH", None)
        # A deployment's secret, which no page can show: a fresh key for the phone numbers.
        from movecar_adapters.crypto import KeyRing

        self.env["MOVECAR_KEYS"] = f"k1={KeyRing.generate()}"
        self.namespace: dict[str, Any] = {"__name__": "__doc_page__"}
        self.output = ""
        (folder / "examples").symlink_to(ROOT / "examples")  # as in a clone

    @contextlib.contextmanager
    def python_env(self) -> Iterator[None]:
        saved, cwd = dict(os.environ), Path.cwd()
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.folder)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            os.chdir(cwd)

    def substitute(self, code: str) -> str:
        for pattern, new in SUBSTITUTE["*"] + SUBSTITUTE.get(self.name, []):
            code = re.sub(pattern, new, code)
        return code

    def bash(self, script: str, where: str, timeout: float = 120) -> str:
        """Run ``script`` with ``bash -e``; keep what it exports; return its stdout."""
        dump = self.folder / ".doc-test-env"
        script = f"{self.substitute(script)}\nenv -0 > {shlex.quote(str(dump))}\n"
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"{where}: exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
            f"\n--- stderr\n{done.stderr[-3000:]}"
        )
        for item in dump.read_text(encoding="utf-8").split("\0"):
            key, _, value = item.partition("=")
            if key.startswith("MOVECAR_"):
                self.env[key] = value
        dump.unlink()
        return done.stdout


# ------------------------------------------------------------------------------ python

_CLAIM = re.compile(r"#\s*(.+?)\s*$")


def _claimed(comment: str) -> str | None:
    """The value a trailing comment states, or None when it is prose."""
    text = comment.strip()
    m = re.match(
        r"([-\d][\d_.,]*\d|\d|[A-Z]\w*\(.*?\)|[A-Z]\w*\.[A-Z_]+|'[^']*'|True|False|None)", text
    )
    if not m:
        return None
    value = m.group(1)
    rest = text[m.end() :]
    if rest and not re.match(r"[\s:,(]", rest):
        return None
    return value


def _matches(value: object, claim: str) -> bool:
    shown = {repr(value), str(value)}
    if hasattr(value, "name") and hasattr(type(value), "__members__"):
        shown.add(f"{type(value).__name__}.{value.name}")  # an enum member
    return claim in shown or claim.replace("_", "") in shown


def run_python(page: Page, block: Block) -> None:
    source = page.substitute(block.code)
    tree = ast.parse(source, filename=block.where)
    lines = source.splitlines()
    out = io.StringIO()
    with page.python_env(), contextlib.redirect_stdout(out):
        for node in tree.body:
            where = f"{block.where}, line {block.line + node.lineno}"
            comment = _CLAIM.search(lines[node.end_lineno - 1]) if node.end_lineno else None
            claim = _claimed(comment.group(1)) if comment else None
            try:
                if isinstance(node, ast.Expr) and claim is not None:
                    expr = ast.Expression(node.value)
                    value = eval(compile(expr, where, "eval"), page.namespace)
                    assert _matches(value, claim), f"{where}: {value!r}, the page says {claim}"
                else:
                    module = ast.Module([node], type_ignores=[])
                    exec(compile(module, where, "exec"), page.namespace)
            except AssertionError:
                raise
            except Exception as exc:
                raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
    page.output = out.getvalue()


# ------------------------------------------------------------------------------- shell


def run_shell(page: Page, block: Block) -> None:
    page.output = page.bash(block.code, block.where)


def _console_steps(code: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise AssertionError(f"expected a '$ command' line, found {line!r}")
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command + "\n" + lines[i]
        i += 1
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        steps.append((command, shown))
    return steps


def _ellipsis(shown: list[str]) -> re.Pattern[str]:
    parts = [re.escape(part) for part in "\n".join(shown).split("...")]
    return re.compile(r"(?s)\A" + ".*?".join(parts) + r"\s*\Z")


def run_console(page: Page, block: Block) -> None:
    for command, shown in _console_steps(block.code):
        out = page.bash(command, f"{block.where}: $ {command}")
        assert _ellipsis(shown).match(out.rstrip("\n")), (
            f"{block.where}: $ {command}\n--- the page shows\n"
            + "\n".join(shown)
            + f"\n--- it printed\n{out}"
        )
        page.output = out


# -------------------------------------------------------------------------------- toml


def _reroot(value: Any, folder: Path) -> Any:
    if isinstance(value, str) and value.startswith("/"):
        return str(folder / value.lstrip("/"))
    if isinstance(value, list):
        return [_reroot(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _reroot(v, folder) for k, v in value.items()}
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def run_toml(page: Page, block: Block) -> None:
    from movecar_core.calendar import YearNotice
    from movecar_core.simulation import Scenario

    try:
        data = tomllib.loads(block.code)
    except tomllib.TOMLDecodeError as exc:
        raise AssertionError(f"{block.where}: not TOML: {exc}") from None
    if "holiday" in data or "year" in data:
        YearNotice.from_toml(block.code, source=block.where)
    elif data.keys() & {"calls_per_year", "profile", "behaviour", "contract", "seats"}:
        Scenario.from_toml(block.code)
    elif data.keys() & {"volume", "seeds", "scenario"}:
        from movecar_adapters.sweep import grid_file_values

        grid_file_values(data)
    else:
        run_config(page, block, data)


#: Settings that name files a deployment has (they are read when the settings load).
_SECRET_FILES = {
    ("keys", "file"),
    ("smtp", "password_file"),
    ("api", "tokens_file"),
    ("api", "webhook_secret_file"),
}


def run_config(page: Page, block: Block, data: dict[str, Any]) -> None:
    from movecar_adapters.config import load_settings
    from movecar_adapters.crypto import KeyRing

    folder = page.folder / f"config-{block.line}"
    data = _reroot(data, folder)
    for section, key in _SECRET_FILES:
        if key in data.get(section, {}):
            secret = Path(data[section][key])
            secret.parent.mkdir(parents=True, exist_ok=True)
            content = {
                "keys": f"k1={KeyRing.generate()}",
                "api": f"agent:seat-07={'t' * 40}" if key == "tokens_file" else "w" * 40,
            }.get(section, "secret")
            secret.write_text(content, encoding="utf-8")
    for named in data.get("calendar", {}).get("years", []):
        # a year file the page made earlier (its console block copies one), where it says
        earlier = page.folder / Path(named).name
        assert earlier.is_file(), f"{block.where}: no year file {Path(named).name} made before"
        Path(named).parent.mkdir(parents=True, exist_ok=True)
        Path(named).write_bytes(earlier.read_bytes())
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        for section, values in data.items()
    )
    path = folder / "movecar.toml"
    path.write_text(text, encoding="utf-8")
    load_settings(path, environ={})


# -------------------------------------------------------------------- the other kinds


def run_json(page: Page, block: Block) -> None:
    json.loads(block.code)


def run_sql(page: Page, block: Block) -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(block.code)


def run_mermaid(page: Page, block: Block) -> None:
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    if "movecar case" in block.code:
        from movecar_core.machine import mermaid

        assert lines(block.code) == lines(mermaid()), f"{block.where}: not `movecar diagram`"
        return
    from movecar_core.settlement import TRANSITIONS

    drawn: set[tuple[str, str, str]] = set()
    for source, target, label in re.findall(r"^\s*(\S+) --> (\w+): (.*)$", block.code, re.M):
        for event in re.findall(r"\b([A-Z][a-z]+[A-Z]\w*)\b", label):
            drawn.add((event, source, target))
    defined = {
        (event.__name__, source.value, target.value)
        for event, (sources, target) in TRANSITIONS.items()
        for source in sources
    }
    defined.add(("ReportSubmitted", "[*]", "reported"))
    assert drawn == defined, (
        f"{block.where}: not movecar_core.settlement.TRANSITIONS: "
        f"drawn only {sorted(drawn - defined)}, missing {sorted(defined - drawn)}"
    )


def run_ini(page: Page, block: Block) -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(block.code)
    command = unit["Service"]["ExecStart"]
    check_synopsis(block, command)


def check_synopsis(block: Block, text: str) -> None:
    """Each ``movecar ...`` command of ``text`` names a real sub-command, and each
    ``--option`` it shows is one of that sub-command's."""
    from movecar_adapters.cli import build_parser

    joined = re.sub(r"\\\n\s*", " ", text)
    joined = re.sub(r"\n\s+(?=[\[-])", " ", joined)
    commands = [line for line in joined.splitlines() if re.search(r"(^|/)movecar ", line)]
    assert commands, f"{block.where}: no movecar command"
    for line in commands:
        words = line[line.index("movecar ") + len("movecar ") :].split()
        parser = build_parser()
        options = set(parser._option_string_actions)
        for word in words:
            actions = [a for a in parser._actions if a.choices and isinstance(a.choices, dict)]
            sub = actions[0].choices.get(word) if actions else None  # type: ignore[union-attr]
            if sub is None:
                if actions and not word.startswith(("-", "[")):
                    known = ", ".join(sorted(actions[0].choices))  # type: ignore[arg-type]
                    raise AssertionError(f"{block.where}: {line!r}: no command {word!r} ({known})")
                break
            parser = sub
            options |= set(parser._option_string_actions)
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
            assert option in options, f"{block.where}: {line!r}: {option} is not an option"


def run_text(page: Page, block: Block) -> None:
    kind = block.marker.split(" ", 1)[0]
    if kind == "output":
        shown = block.code.rstrip("\n").splitlines()
        assert _ellipsis(shown).match(page.output.rstrip("\n")), (
            f"{block.where}: the output shown is not what the block before printed:\n{page.output}"
        )
    elif kind == "synopsis":
        check_synopsis(block, block.code)
    elif kind == "layout":
        for line in block.code.splitlines():
            folder = line.split()[0]
            assert (ROOT / folder).is_dir(), f"{block.where}: no folder {folder}"
    elif kind == "illustration":
        assert len(block.marker.split(" ", 1)) == 2, f"{block.where}: say why it is not run"
    else:
        raise AssertionError(
            f"{block.where}: a text block needs a marker "
            "<!-- doc-test: output|synopsis|layout|illustration -->"
        )


RUNNERS: dict[str, Callable[[Page, Block], None]] = {
    "python": run_python,
    "sh": run_shell,
    "bash": run_shell,
    "shell": run_shell,
    "console": run_console,
    "toml": run_toml,
    "json": run_json,
    "sql": run_sql,
    "ini": run_ini,
    "mermaid": run_mermaid,
    "text": run_text,
}
assert set(RUNNERS) == LANGUAGES

#: Objects a page's prose introduces before its blocks use them (see the docstring).
SETUP: dict[str, str] = {
    # "every outbound call to an owner is recorded": a SQLite deployment, a case whose
    # owner answered, and the call's audio (one second of silence) as the switch left it.
    "recordings.md": """
import wave
from movecar_adapters import connect
from movecar_core import CallOutcome
from movecar_core.memory import InMemoryVehicleRegistry

owners = InMemoryVehicleRegistry({"苏D12345": "13912345678"})
mc = connect("sqlite:///movecar.db", registry=owners)
case_id = mc.open_case(plate="苏D12345", location="湖塘镇花园街", requester_phone="13800001111")
mc.locate_owner(case_id, agent_id="seat-1")
call = mc.call_owner(case_id, agent_id="seat-1")
mc.record_call_outcome(case_id, call.call_id, CallOutcome.ANSWERED_AGREED)
ended_at = mc.clock.now()
with wave.open("mixed.wav", "wb") as audio:
    audio.setnchannels(1)
    audio.setsampwidth(2)
    audio.setframerate(8000)
    audio.writeframes(bytes(16000))
""",
}

#: Pages about operating a deployment: they run against one, a SQLite database in the
#: page's folder made as `movecar db upgrade` makes it (the default URL, sqlite:///movecar.db).
DEPLOYED = {"incidents.md", "ledger.md", "pricing.md", "reports.md", "requesters.md", "zh.md"}

# --------------------------------------------------------------------------- the tests

PAGES = pages()


def _elsewhere(path: Path, block: Block) -> bool:
    """Whether another test runs ``block`` (see :data:`EXECUTED_ELSEWHERE`)."""
    other = EXECUTED_ELSEWHERE.get(path.name)
    return other is not None and block.lang in other[1]


def test_what_the_pages_leave_to_ci_is_in_ci() -> None:
    """The suite and the Debian packages a page shows are what .ci/run runs and installs."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"(?m)^python -m pytest", ci)
    installed = set(" ".join(re.findall(r"apt-get install -y[^\n]*(?:\\\n[^\n]*)*", ci)).split())
    for path in PAGES:
        for block in blocks_of(path):
            for line in re.findall(r"(?m)^apt-get install ([^#\n]*)", block.code):
                missing = set(line.split()) - installed
                assert not missing, f"{block.where}: .ci/run does not install {missing}"


def test_every_block_has_a_language_this_test_runs() -> None:
    for path in pages():
        if path.name in EXECUTED_ELSEWHERE:
            assert (ROOT / EXECUTED_ELSEWHERE[path.name][0]).is_file(), path.name
        for block in blocks_of(path):
            assert block.lang in LANGUAGES, f"{block.where}: give the block a language"


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_the_page_blocks_run(path: Path, tmp_path: Path) -> None:
    page = Page(path.name, tmp_path)
    blocks = blocks_of(path)
    if path.name in DEPLOYED:
        from movecar_adapters import connect

        with page.python_env():
            connect(upgrade=True).close()
    if path.name in SETUP:
        with page.python_env():
            exec(compile(SETUP[path.name], f"SETUP[{path.name!r}]", "exec"), page.namespace)
    ran = 0
    for block in blocks:
        if _elsewhere(path, block):
            ran += 1
            continue
        assert block.lang in RUNNERS, f"{block.where}: give the block a language"
        RUNNERS[block.lang](page, block)
        if block.marker.startswith("file "):  # later blocks use it as that file
            target = tmp_path / block.marker.split(" ", 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        ran += 1
    assert ran == len(blocks)
