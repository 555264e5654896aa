"""The owner data source as a local mirror table (issue 13, 二(二)) on SQLite, PostgreSQL and
MariaDB: the port's contract, the loader of the nightly extract (one transaction, every row
checked, phones sealed and bound to their plate), a host's own table, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_adapters.cli import main
from movecar_adapters.crypto import KeyRing
from movecar_adapters.registry import MirrorExtractInvalid, RegistryAnswerInvalid
from movecar_adapters.registry_sql import (
    MIRROR_TABLE,
    SqlVehicleRegistry,
    create_mirror_table,
    load_mirror,
    load_mirror_csv,
    mirror_table,
)
from movecar_adapters.sql import make_engine
from movecar_core.calendar import SHANGHAI
from movecar_core.errors import InvalidPlate, RegistryUnavailable
from movecar_core.phones import parse_phone
from movecar_core.plates import parse_plate
from movecar_core.ports import OwnerContact
from movecar_core.testing.contracts import VehicleRegistryContract
from movecar_core.testing.strategies import phones, plates

NOW = dt.datetime(2025, 3, 2, 1, 30, tzinfo=SHANGHAI)
EXTRACT = """plate,owner_phone,source,extracted_at
苏D12345,13912345678,jsjj-extract,2025-03-01T23:00:00+08:00
苏d 54321,+86 139 0000 1111,,
苏E99998,0519-81997327,jsjj-extract,2025-03-01 23:00:00
"""


@pytest.fixture
def engine(fresh_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(fresh_url)
    create_mirror_table(engine)
    yield engine
    engine.dispose()


def write(tmp_path: Path, text: str, name: str = "extract.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def rows_of(engine: sa.Engine, table: str = MIRROR_TABLE) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        got = conn.execute(sa.text(f"SELECT plate, owner_phone, source FROM {table}")).all()
    return sorted((r[0], r[1], r[2]) for r in got)


class TestSqlVehicleRegistryContract(VehicleRegistryContract):
    @pytest.fixture
    def registry(self, engine: sa.Engine, keys: KeyRing) -> SqlVehicleRegistry:
        load_mirror(
            engine, [(2, {"plate": "苏D12345", "owner_phone": "13912345678"})], keys, now=NOW
        )
        return SqlVehicleRegistry(engine, keys=keys)

    @pytest.fixture
    def make_unavailable(self, engine: sa.Engine) -> Callable[[], None]:
        def drop() -> None:
            mirror_table().drop(engine)

        return drop


def test_an_extract_is_loaded_and_looked_up(
    engine: sa.Engine, keys: KeyRing, tmp_path: Path
) -> None:
    done = load_mirror_csv(engine, write(tmp_path, EXTRACT), keys, now=NOW)
    assert (done.rows, done.removed, done.merged) == (3, 0, False)
    registry = SqlVehicleRegistry(engine, keys=keys)
    assert registry.lookup("苏D12345") == OwnerContact("13912345678", "jsjj-extract")
    assert registry.lookup("苏D54321") == OwnerContact("13900001111", "mirror")
    assert registry.lookup("苏E99998") == OwnerContact("0519-81997327", "jsjj-extract")
    assert registry.lookup("苏E99999") is None
    with pytest.raises(InvalidPlate):
        registry.lookup("../../etc")
    table = mirror_table()
    with engine.connect() as conn:
        times = dict(conn.execute(sa.select(table.c.plate, table.c.extracted_at)).all())
    assert times["苏D12345"] == dt.datetime(2025, 3, 1, 15, 0, tzinfo=dt.UTC)
    assert times["苏E99998"] == dt.datetime(2025, 3, 1, 15, 0, tzinfo=dt.UTC)  # CST if naive
    assert times["苏D54321"] == NOW


def test_phones_are_sealed_at_rest_and_bound_to_their_plate(
    engine: sa.Engine, keys: KeyRing, tmp_path: Path
) -> None:
    load_mirror_csv(engine, write(tmp_path, EXTRACT), keys, now=NOW)
    stored = rows_of(engine)
    assert all(KeyRing.is_bound(phone) for _, phone, _ in stored)
    dump = json.dumps(stored)
    for digits in ("13912345678", "13900001111", "81997327"):
        assert digits not in dump
    # A phone copied onto another plate's row does not open there.
    phones_by_plate = {plate: phone for plate, phone, _ in stored}
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {MIRROR_TABLE} SET owner_phone = :p WHERE plate = :plate"),
            {"p": phones_by_plate["苏D12345"], "plate": "苏D54321"},
        )
    registry = SqlVehicleRegistry(engine, keys=keys)
    with pytest.raises(RegistryAnswerInvalid, match="does not decrypt") as info:
        registry.lookup("苏D54321")
    assert "139" not in str(info.value) and "苏D54321" not in str(info.value)
    assert registry.lookup("苏D12345") is not None
    # Keys that did not seal it cannot open it.
    other = SqlVehicleRegistry(engine, keys=KeyRing([("k9", KeyRing.generate())]))
    with pytest.raises(RegistryAnswerInvalid, match="does not decrypt"):
        other.lookup("苏D12345")


def test_the_nightly_extract_replaces_the_last_and_a_partial_one_merges(
    engine: sa.Engine, keys: KeyRing, tmp_path: Path
) -> None:
    load_mirror_csv(engine, write(tmp_path, EXTRACT), keys, now=NOW)
    nightly = "plate,owner_phone\n苏D12345,13800002222\n苏A00001,13800003333\n"
    done = load_mirror_csv(engine, write(tmp_path, nightly), keys, now=NOW)
    assert (done.rows, done.removed) == (2, 3)
    registry = SqlVehicleRegistry(engine, keys=keys)
    assert [r[0] for r in rows_of(engine)] == ["苏A00001", "苏D12345"]
    assert registry.lookup("苏D12345") == OwnerContact("13800002222", "mirror")
    partial = "plate,owner_phone\n苏D12345,13800004444\n苏B77777,13800005555\n"
    done = load_mirror_csv(engine, write(tmp_path, partial), keys, now=NOW, merge=True)
    assert (done.rows, done.removed, done.merged) == (2, 1, True)
    assert [r[0] for r in rows_of(engine)] == ["苏A00001", "苏B77777", "苏D12345"]
    assert registry.lookup("苏D12345") == OwnerContact("13800004444", "mirror")


SHORT_PHONE = r"line 2: owner_phone: invalid phone '139\*\*\*\*\*67'"
TWICE = r"line 3: plate 苏D\*\*\*45 is on line 2 too"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("plate,owner_phone\n苏D12345,13912345678\n苏Q1,13912345678\n", "line 3: plate"),
        ("plate,owner_phone\n苏D12345,1391234567\n", SHORT_PHONE),
        ("plate,owner_phone\n苏D12345,13912345678\n苏d12345,13800001111\n", TWICE),
        ("plate,phone\n苏D12345,13912345678\n", "no owner_phone column"),
        ("", "empty"),
        ("plate,owner_phone\n苏D12345,13912345678,extra\n", "more fields than the header"),
        ("plate,owner_phone,plate\n苏D12345,13912345678,苏D1\n", "named twice"),
        ("plate,owner_phone,extracted_at\n苏D12345,13912345678,yesterday\n", "not an ISO 8601"),
        ("plate,owner_phone,source\n苏D12345,13912345678," + "s" * 150 + "\n", "longer than 100"),
        ('plate,owner_phone\n"苏D12345,13912345678\n', "line"),
        ("plate,owner_phone\n" + "x" * 300 + ",13912345678\n", "longer than 200"),
    ],
)  # fmt: skip
def test_a_bad_row_names_its_line_and_nothing_is_written(
    engine: sa.Engine, keys: KeyRing, tmp_path: Path, text: str, says: str
) -> None:
    load_mirror_csv(engine, write(tmp_path, EXTRACT, "old.csv"), keys, now=NOW)
    before = rows_of(engine)
    with pytest.raises(MirrorExtractInvalid, match=says) as info:
        load_mirror_csv(engine, write(tmp_path, text), keys, now=NOW)
    assert "13912345678" not in str(info.value) and "1391234567" not in str(info.value)
    assert rows_of(engine) == before


def test_an_extract_in_gb18030(engine: sa.Engine, keys: KeyRing, tmp_path: Path) -> None:
    path = write(
        tmp_path, "plate,owner_phone,source\n苏D12345,13912345678,江苏交警\n", encoding="gb18030"
    )
    with pytest.raises(MirrorExtractInvalid, match="encoding"):
        load_mirror_csv(engine, path, keys, now=NOW)
    load_mirror_csv(engine, path, keys, now=NOW, encoding="gb18030")
    assert SqlVehicleRegistry(engine, keys=keys).lookup("苏D12345") == OwnerContact(
        "13912345678", "江苏交警"
    )
    with pytest.raises(MirrorExtractInvalid, match="not a known encoding"):
        load_mirror_csv(engine, path, keys, now=NOW, encoding="no-such")


def test_a_host_table_of_plain_phones_with_its_own_columns(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE host_owners (hphm VARCHAR(16) PRIMARY KEY, sjhm VARCHAR(40))")
        )
        conn.execute(
            sa.text("INSERT INTO host_owners VALUES (:a, :b)"),
            [
                {"a": "苏D12345", "b": "139 1234 5678"},
                {"a": "苏D11111", "b": "12345"},
                {"a": "苏D22222", "b": None},
            ],
        )
    registry = SqlVehicleRegistry(
        engine, table="host_owners", plate_column="hphm", phone_column="sjhm",
        source_column=None, source="host-mirror", encrypted=False,
    )  # fmt: skip
    assert registry.lookup("苏D12345") == OwnerContact("13912345678", "host-mirror")
    with pytest.raises(RegistryAnswerInvalid, match="not a phone number") as info:
        registry.lookup("苏D11111")
    assert "12345" not in str(info.value).replace("苏D***11", "")
    with pytest.raises(RegistryAnswerInvalid, match="NoneType, not text"):
        registry.lookup("苏D22222")


def test_a_missing_table_or_database_is_unavailable(
    engine: sa.Engine, keys: KeyRing, tmp_path: Path
) -> None:
    with pytest.raises(RegistryUnavailable, match="no_such_table cannot be read"):
        SqlVehicleRegistry(engine, keys=keys, table="no_such_table").lookup("苏D12345")
    from movecar_adapters.config import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        SqlVehicleRegistry(f"sqlite:///{tmp_path}/typo.db", keys=keys)
    assert not (tmp_path / "typo.db").exists()
    for bad in ["x; DROP TABLE y", "1abc", "", "a" * 64]:
        with pytest.raises(ConfigError, match="table"):
            SqlVehicleRegistry(engine, keys=keys, table=bad)
    with pytest.raises(ConfigError, match="KeyRing"):
        SqlVehicleRegistry(engine)


def test_a_url_makes_an_engine_the_registry_closes(fresh_url: str, keys: KeyRing) -> None:
    engine = make_engine(fresh_url)
    create_mirror_table(engine)
    load_mirror(engine, [(2, {"plate": "苏D12345", "owner_phone": "13912345678"})], keys, now=NOW)
    engine.dispose()
    registry = SqlVehicleRegistry(fresh_url, keys=keys)
    assert registry.lookup("苏D12345") is not None
    registry.close()
    assert registry.engine.pool.checkedout() == 0


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    owners=st.dictionaries(plates(), phones(), min_size=1, max_size=8),
    unknown=plates(),
)
def test_any_extract_reads_back_exactly(
    engine: sa.Engine, keys: KeyRing, owners: dict[str, str], unknown: str
) -> None:
    """For every extract: each plate gives its owner's canonical phone, any other None."""
    rows = [(i + 2, {"plate": p, "owner_phone": ph}) for i, (p, ph) in enumerate(owners.items())]
    canonical = {}
    for _, row in rows:
        canonical.setdefault(parse_plate(row["plate"]).canonical, []).append(row["owner_phone"])
    if any(len(v) > 1 for v in canonical.values()):
        with pytest.raises(MirrorExtractInvalid, match="one owner per plate"):
            load_mirror(engine, rows, keys, now=NOW)
        return
    load_mirror(engine, rows, keys, now=NOW)
    registry = SqlVehicleRegistry(engine, keys=keys)
    for plate, (phone,) in canonical.items():
        found = registry.lookup(plate)
        assert found == OwnerContact(parse_phone(phone).canonical, "mirror")
    if parse_plate(unknown).canonical not in canonical:
        assert registry.lookup(unknown) is None


# --- the CLI --------------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_loads_the_mirror(
    fresh_url: str, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={keys.entries()[0][1]}")
    monkeypatch.delenv("MOVECAR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, EXTRACT)
    code, out, err = run(
        ["registry", "load-mirror", str(path), "--db", fresh_url, "--create", "--json"], capsys
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"table": MIRROR_TABLE, "rows": 3, "removed": 0, "mode": "replace"}
    engine = make_engine(fresh_url)
    try:
        assert SqlVehicleRegistry(engine, keys=keys).lookup("苏D12345") is not None
    finally:
        engine.dispose()
    bad = write(tmp_path, "plate,owner_phone\n苏D12345,1391234567x\n", "bad.csv")
    code, out, err = run(["registry", "load-mirror", str(bad), "--db", fresh_url], capsys)
    assert code == 2 and "line 2: owner_phone" in err and "1391234567" not in err
    code, _, err = run(
        ["registry", "load-mirror", str(tmp_path / "none.csv"), "--db", fresh_url], capsys
    )
    assert code == 3 and "no such file" in err
    monkeypatch.delenv("MOVECAR_KEYS")
    code, _, err = run(["registry", "load-mirror", str(path), "--db", fresh_url], capsys)
    assert code == 3 and "MOVECAR_KEYS" in err


def test_cli_refuses_a_sqlite_path_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVECAR_KEYS", f"k1={KeyRing.generate()}")
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, EXTRACT)
    code, _, err = run(
        ["registry", "load-mirror", str(path), "--db", f"sqlite:///{tmp_path}/typo.db"], capsys
    )
    assert code == 3 and "no such file" in err
    assert not os.path.exists(tmp_path / "typo.db")


# --- connect() ------------------------------------------------------------------------------


def test_connect_reads_the_mirror_beside_the_store(
    fresh_url: str, keys: KeyRing, tmp_path: Path
) -> None:
    from movecar_adapters import connect
    from movecar_core.case import OwnerLookedUp

    engine = make_engine(fresh_url)
    create_mirror_table(engine)
    load_mirror_csv(engine, write(tmp_path, EXTRACT), keys, now=NOW)
    engine.dispose()
    config = write(tmp_path, '[registry]\nkind = "sql"\nsource = "jsjj-mirror"\n', "movecar.toml")
    with connect(fresh_url, keys=keys, config=config, environ={}) as mc:
        assert isinstance(mc.registry, SqlVehicleRegistry)
        assert mc.registry.engine is mc.store.engine  # type: ignore[attr-defined]
        case_id = mc.open_case(plate="苏D54321", location="湖塘镇", requester_phone="13800001111")
        mc.locate_owner(case_id, agent_id="seat-1")
        looked = [e for e in mc.store.load(case_id) if isinstance(e, OwnerLookedUp)]
        # The row has no source of its own: the loader's default ("mirror") was stored.
        assert [(e.owner_phone, e.source) for e in looked] == [("13900001111", "mirror")]


def test_connect_reads_a_mirror_in_another_database(keys: KeyRing, tmp_path: Path) -> None:
    from movecar_adapters import connect

    url = f"sqlite:///{tmp_path}/mirror.db"
    engine = make_engine(url)
    create_mirror_table(engine, "nightly")
    load_mirror_csv(engine, write(tmp_path, EXTRACT), keys, now=NOW, table="nightly")
    engine.dispose()
    config = write(tmp_path, '[registry]\ntable = "nightly"\n', "movecar.toml")
    env = {"MOVECAR_REGISTRY_URL": url, "MOVECAR_KEYS": f"k1={keys.entries()[0][1]}"}
    with connect("memory://", config=config, environ=env) as mc:
        assert mc.registry.lookup("苏D12345") == OwnerContact("13912345678", "jsjj-extract")
    from movecar_adapters.config import ConfigError

    with pytest.raises(ConfigError, match="sealed"):
        connect("memory://", config=config, environ={"MOVECAR_REGISTRY_URL": url})
