"""``movecar price`` and ``movecar settle`` (adapters/cli_money.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from movecar_adapters.cli import main
from movecar_core.pricing import TierMode, annual_fee


def _run(argv: list[str]) -> int:
    return main(argv)


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


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ("-3", "ASCII digits"),
        ("1,000", "ASCII digits"),
        ("１０００", "ASCII digits"),
        ("100000001", "more than a service year can hold"),
        ("9" * 400, "more than a service year can hold"),
    ],
)
def test_price_rejects_volumes_outside_the_bounds(
    capsys: pytest.CaptureFixture[str], volume: str, message: str
) -> None:
    assert _run(["price", "--volume", volume]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and len(err) < 1000


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "months.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_settle_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"2024-{m:02d},300000\n" for m in range(4, 13)) + "".join(
        f"2025-{m:02d},300000\n" for m in range(1, 4)
    )
    path = _csv(tmp_path, "month,billable_calls\n" + rows)
    assert _run(["settle", path, "--carried-in", "100000"]) == 0
    out = capsys.readouterr().out
    assert "2024-04" in out
    assert "carried in" in out
    assert "6,475,000.00" in out  # annual fee
    assert "-345,000.00" in out  # true-up


def test_settle_json_adds_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, "\ufeff2024-04,1000000\n2024-05,499999\n\n2024-06,1\n")  # BOM
    assert _run(["settle", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["month"] for m in data["months"]] == ["2024-04", "2024-05", "2024-06"]
    assert data["total_volume"] == 1_500_000
    assert data["annual_fee"] == "2775000.00"
    total = Decimal(data["provisional_total"]) + Decimal(data["true_up"])
    assert total == Decimal(data["annual_fee"])
    assert data["months"][2]["unit_price"] == "1.85"


def test_settle_graduated_and_open_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    stdin = io.TextIOWrapper(io.BytesIO(b"2024-04,10\n2024-05,20\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert _run(["settle", "-", "--mode", "graduated", "--open", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["true_up"] is None
    assert data["provisional_total"] == "57.00"
    assert data["months"][0]["month"] == "2024-04"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("month,calls\n2024-04,1\n", "1: month='month'"),
        ("2024-04,abc\n", ":1: billable_calls='abc'"),
        ("2024-04,-1\n", "ASCII digits"),
        ("2024-04,1,000\n", "got 3 fields"),
        ("2024-04,１０\n", "ASCII digits"),
        ("2024-04,١٠\n", "ASCII digits"),
        ("2024-04\n", "got 1 fields"),
        ("2024-4,1\n", "is not YYYY-MM"),
        ("2024-04,1\n2024-05,2\n2024-04,3\n", ":3: month 2024-04 is also on line 1"),
        ("2024-04,1\n2024-06,2\n", "must follow each other"),
        ("2024-04,100000001\n", "more than a service year can hold"),
        ("2024-04,60000000\n2024-05,60000000\n", "calls in all"),
        (
            "".join(f"{2024 + (m > 12)}-{(m - 1) % 12 + 1:02d},1\n" for m in range(1, 14)),
            "13 months",
        ),
        ("", "no 'month,billable_calls' rows"),
    ],
)
def test_settle_bad_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    assert _run(["settle", _csv(tmp_path, content)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("movecar settle: ")
    assert message in err
    assert err.count("\n") == 1


def test_settle_missing_file_is_an_environment_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["settle", str(tmp_path / "nope.csv")]) == 3
    assert "nope.csv" in capsys.readouterr().err
