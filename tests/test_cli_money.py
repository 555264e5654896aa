"""``movecar price`` and ``movecar settle`` (adapters/cli_money.py)."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

import pytest

from movecar_adapters.cli_money import register
from movecar_core.pricing import TierMode, annual_fee


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="movecar")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_price_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["price", "--volume", "1500000"]) == 0
    out = capsys.readouterr().out
    assert "1.85" in out
    assert "2,775,000.00" in out
    assert "volume" in out


def test_price_reports_the_cliff(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["price", "--volume", "1499999"]) == 0
    out = capsys.readouterr().out
    assert "2,849,998.10" in out
    assert "cliff" in out
    assert "74,998.10 less" in out


def test_price_json_both_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["price", "--volume", "1500000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["annual_fee"] == "2775000.00"
    assert data["unit_price"] == "1.85"
    assert data["mode"] == "volume"
    assert data["cliff"] is None
    assert _run(["price", "--volume", "1500000", "--mode", "graduated", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["annual_fee"] == str(annual_fee(1_500_000, TierMode.GRADUATED)) == "2849999.95"
    assert data["marginal_price"] == "1.85"


def test_price_rejects_a_negative_volume(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(["price", "--volume", "-3"])
    assert exit_info.value.code == 2
    assert "negative" in capsys.readouterr().err


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "months.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_settle_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"2024-{m:02d},300000\n" for m in range(4, 13)) + "".join(
        f"2025-{m:02d},300000\n" for m in range(1, 4)
    )
    path = _csv(tmp_path, "month,calls\n" + rows)
    assert _run(["settle", path, "--carried-in", "100000"]) == 0
    out = capsys.readouterr().out
    assert "2024-04" in out
    assert "carried in" in out
    assert "6,475,000.00" in out  # annual fee
    assert "-345,000.00" in out  # true-up


def test_settle_json_adds_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, "month,calls\n2024-04,1000000\n2024-05,499999\n2024-06,1\n")
    assert _run(["settle", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["month"] for m in data["months"]] == ["2024-04", "2024-05", "2024-06"]
    assert data["total_volume"] == 1_500_000
    assert data["annual_fee"] == "2775000.00"
    total = Decimal(data["provisional_total"]) + Decimal(data["true_up"])
    assert total == Decimal(data["annual_fee"])
    assert data["months"][2]["unit_price"] == "1.85"


def test_settle_graduated_and_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, "calls\n10\n20\n")
    assert _run(["settle", path, "--mode", "graduated", "--open", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["true_up"] is None
    assert data["provisional_total"] == "57.00"
    assert data["months"][0]["month"] == "month 1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("month,volume\n2024-04,1\n", "'calls' column"),
        ("month,calls\n2024-04,abc\n", "calls='abc'"),
        ("month,calls\n2024-04,-1\n", "negative"),
        ("calls\n" + "1\n" * 13, "13 months"),
    ],
)
def test_settle_bad_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    assert _run(["settle", _csv(tmp_path, content)]) == 2
    err = capsys.readouterr().err
    assert "movecar settle: error" in err
    assert message in err


def test_settle_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["settle", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
