"""The composition root: one call, one configuration, one clock, one contract."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlsupport import KEY_1

from movecar_adapters import ConfigError, connect
from movecar_adapters.clock import SystemClock
from movecar_adapters.crypto import KeyConfigError, KeyRing
from movecar_adapters.sql import DatabaseUnavailable, SqlStore
from movecar_adapters.worker import drain
from movecar_core import CallOutcome, CaseState, ServiceMonth
from movecar_core.app import Dispatch
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryCaseStore, InMemoryVehicleRegistry
from movecar_core.outbox import CALL_OUTCOME_DUE

NO_ENV: dict[str, str] = {}
T0 = dt.datetime(2024, 5, 6, 7, 40, tzinfo=SHANGHAI)


def keys_env() -> dict[str, str]:
    return {"MOVECAR_KEYS": f"k1={KEY_1}"}


def test_memory_url_is_the_in_memory_adapters() -> None:
    mc = connect("memory://", environ=NO_ENV)
    assert isinstance(mc.store, InMemoryCaseStore)
    assert isinstance(mc.clock, SystemClock)
    assert mc.store.clock is mc.clock
    assert mc.dispatch is Dispatch.INLINE


def test_the_default_is_the_embedded_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with connect(environ=keys_env()) as mc:
        assert isinstance(mc.store, SqlStore)
        assert mc.store.dialect == "sqlite"
        mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    assert (tmp_path / "movecar.db").is_file()


def test_a_database_without_keys_is_refused_without_a_secret(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="MOVECAR_KEYS"):
        connect(f"sqlite:///{tmp_path}/x.db", environ=NO_ENV)
    key = KeyRing.generate()
    with pytest.raises(KeyConfigError) as info:
        connect(f"sqlite:///{tmp_path}/x.db", environ={"MOVECAR_KEYS": key})  # no "id="
    assert key not in str(info.value)
    with pytest.raises(KeyConfigError) as info:
        connect(f"sqlite:///{tmp_path}/x.db", environ={"MOVECAR_KEYS": f"{key}=k1"})  # reversed
    assert key not in str(info.value) and "entry 1" in str(info.value)


def test_an_unreachable_server_is_a_typed_error_with_the_password_masked() -> None:
    url = "postgresql+psycopg://movecar:s3cret-pw@127.0.0.1:1/movecar"
    with pytest.raises(DatabaseUnavailable) as info:
        connect(url, keys=KeyRing([("k1", KEY_1)]), environ=NO_ENV)
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "movecar:***@127.0.0.1:1" in message


def test_a_sqlite_file_in_a_missing_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot open"):
        connect(f"sqlite:///{tmp_path}/no/such/dir/x.db", environ=keys_env())


def test_settings_come_from_arguments_then_environment_then_movecar_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys").write_text(f"k1={KEY_1}\n", encoding="utf-8")
    (tmp_path / "movecar.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/from-toml.db"\n'
        '[keys]\nfile = "keys"\n'
        '[engine]\ndispatch = "outbox"\nmax_call_attempts = 2\n'
        "call_outcome_timeout_s = 60\nfollow_up_after_s = 0\n",
        encoding="utf-8",
    )
    with connect(environ=NO_ENV) as mc:  # ./movecar.toml is read when it exists
        assert isinstance(mc.store, SqlStore)
        assert str(mc.store.engine.url).endswith("from-toml.db")
        assert mc.dispatch is Dispatch.OUTBOX and mc.store.effects.dispatch_calls
        assert mc.policy.max_call_attempts == 2
        assert mc.effects.call_outcome_timeout == dt.timedelta(seconds=60)
        assert mc.effects.follow_up_after is None
    env = {**keys_env(), "MOVECAR_DB_URL": f"sqlite:///{tmp_path}/from-env.db"}
    with connect(environ=env) as mc:
        assert str(mc.store.engine.url).endswith("from-env.db")  # type: ignore[attr-defined]
    with connect(f"sqlite:///{tmp_path}/from-arg.db", environ=env, dispatch="inline") as mc:
        assert str(mc.store.engine.url).endswith("from-arg.db")  # type: ignore[attr-defined]
        assert mc.dispatch is Dispatch.INLINE and not mc.effects.dispatch_calls


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[databse]\nurl = 'x'\n", "unknown section"),
        ("[engine]\ndispach = 'outbox'\n", "unknown setting engine.dispach"),
        ("[engine]\ndispatch = 'sometimes'\n", "inline' or 'outbox"),
        ("[engine]\nmax_call_attempts = true\n", "must be int"),
        ("[engine]\nmax_call_attempts = 50\n", "1 to 10"),
        ("[database\nurl = 'x'\n", "not valid TOML"),
        ("[keys]\nfile = 'no-such-file'\n", "cannot read it"),
    ],
)
def test_a_bad_configuration_file_is_named_in_a_typed_error(
    tmp_path: Path, text: str, match: str
) -> None:
    config = tmp_path / "movecar.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        connect("memory://", config=config, environ=NO_ENV)
    with pytest.raises(ConfigError, match="not found"):
        connect("memory://", config=tmp_path / "absent.toml", environ=NO_ENV)


def test_one_clock_everywhere(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Events, state rows, the access log, outbox deadlines, timers, the worker and the
    month's deadlines all see the one simulated clock, and no other."""

    def no_wall_clock(self: SystemClock) -> dt.datetime:
        raise AssertionError("the wall clock was read")

    monkeypatch.setattr(SystemClock, "now", no_wall_clock)
    clock = ManualClock(T0)
    registry = InMemoryVehicleRegistry({"苏D12345": "13912345678"})
    mc = connect(fresh_url, clock=clock, registry=registry, environ=keys_env())
    store = mc.store
    assert isinstance(store, SqlStore)
    assert store.clock is mc.clock is clock
    assert store.contract is mc.contract

    case_id = mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    clock.advance(seconds=30)
    mc.locate_owner(case_id, agent_id="seat-1")
    clock.advance(seconds=30)
    mc.call_owner(case_id, agent_id="seat-1")
    assert [e.at for e in mc.history(case_id)] == [
        T0,
        T0 + dt.timedelta(seconds=30),
        T0 + dt.timedelta(minutes=1),
    ]
    row = store.state_row(case_id)
    assert row is not None and row["opened_at"] == T0
    store.log_access("auditor-1", "read_history", case_id)
    assert store.access_log(case_id)[-1]["at"] == clock.now()
    [due] = [e for e in store.pending(case_id) if e.kind == CALL_OUTCOME_DUE]
    assert due.due_at == clock.now() + mc.effects.call_outcome_timeout

    clock.advance(minutes=2)
    assert drain(mc, "w1") == []  # the worker sees the same time: not due yet
    clock.advance(minutes=1)
    [run] = drain(mc, "w1")
    assert (run.kind, run.ok) == (CALL_OUTCOME_DUE, True)
    assert mc.case(case_id).last_outcome is CallOutcome.OUTCOME_UNKNOWN
    assert mc.history(case_id)[-1].at == clock.now()

    mc.cancel(case_id, note="求助人已自行解决")
    assert mc.case(case_id).state is CaseState.CANCELLED
    clock.set(dt.datetime(2024, 6, 3, 10, 0, tzinfo=SHANGHAI))
    month = mc.settle_month(ServiceMonth(2024, 5))
    assert month.deadlines.report_due == dt.date(2024, 6, 5)
    assert month.recorded_at == clock.now()
    mc.close()
