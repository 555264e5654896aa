"""Every example runs, as a newcomer would run it, and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sip_support import Sipp, require_tools

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "quickstart.py": "is moved; owner 139****5678",
    "own_adapters.py": "escalated_to_110",
    "host_property_suite.py": "kept every invariant",
    "host_http_property_suite.py": "over HTTP kept every invariant",
    "bulk_import.py": "audit: 20000 cases, 100000 events, all verify",
    "sip_call.py": "recording kept:",
}


def test_every_example_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    argv, env, phone = [sys.executable, str(EXAMPLES / name)], dict(os.environ), None
    if name == "sip_call.py":  # a real call: sipp is the owner's phone
        require_tools()
        phone = Sipp("contract.xml", tmp_path / "sipp", calls=1, HOLD_MS=8000)
        argv.append("13912345678")
        env["MOVECAR_SIP_TRUNK"] = phone.trunk
        for name_ in ("MOVECAR_CONFIG", "MOVECAR_RECORDINGS"):
            env.pop(name_, None)
    try:
        done = subprocess.run(
            argv,
            cwd=tmp_path,  # examples must not depend on the working directory
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        if phone is not None:
            phone.stop()
    assert done.returncode == 0, done.stderr
    assert EXPECTED[name] in done.stdout


def test_readme_code_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    found = re.search(r"## In code\n.*?```python\n(.*?)```", readme, re.S)
    assert found is not None, "README lost its 'In code' section"
    exec(compile(found.group(1), "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "0519110 您好，这是公安 110 挪车服务专线，您是苏D12345 车主吗？",
        "moved",
    ]
