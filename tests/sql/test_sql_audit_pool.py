"""The audit's case checks in helper processes find exactly what one process finds, on
every backend, and a helper that crashes, lies or fails changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sql_audit import populate, tampering

from movecar_adapters.crypto import KeyRing
from movecar_adapters.sql import SqlStore, StorageInputError, audit_pool, verify
from movecar_adapters.sql.audit import AuditResult
from movecar_adapters.sql.audit_cases import CaseRules, case_ranges
from movecar_adapters.sql.audit_pool import CaseChecks, choose_workers
from movecar_core.errors import InvalidInput
from movecar_core.testing.contracts import sample_history

EXAMPLES = {"sqlite": 12, "postgresql": 5, "mariadb": 5}


def both(store: SqlStore) -> tuple[AuditResult, AuditResult]:
    """The audit in this process alone, and with a helper, one case per range."""
    return verify(store, workers=1), verify(store, workers=2, page=1)


def test_helpers_find_what_one_process_finds(fresh_store: SqlStore, backend: str) -> None:
    populate(fresh_store)
    alone, helped = both(fresh_store)
    assert alone.ok and alone == helped

    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        what, _subjects, undo = data.draw(tampering(fresh_store))
        try:
            alone, helped = both(fresh_store)
            assert not alone.ok, what
            assert helped == alone, what  # the same findings, in the same order
        finally:
            undo()

    check()


def test_a_wrong_key_is_the_same_verdict_with_helpers(fresh_store: SqlStore) -> None:
    populate(fresh_store)
    other = SqlStore(fresh_store.engine, KeyRing([("k1", KeyRing.generate())]))
    alone, helped = both(other)
    assert alone.unverifiable and not alone.findings
    assert helped == alone


@pytest.mark.parametrize("probe", ["audit_probe_dies", "audit_probe_lies", "audit_probe_fails"])
def test_a_helper_that_crashes_lies_or_fails_changes_nothing(
    fresh_store: SqlStore, probe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(fresh_store)
    with fresh_store.engine.begin() as conn:  # one finding, so "nothing found" cannot pass
        conn.execute(
            sa.text("UPDATE mc_events SET hash = :h WHERE case_id = 'feb-1'"), {"h": "0" * 64}
        )
    alone = verify(fresh_store, workers=1)
    monkeypatch.setattr(CaseChecks, "child_module", probe)
    assert verify(fresh_store, workers=3, page=1) == alone
    assert alone.tampered_cases == {"feb-1"}


def test_keys_and_password_reach_helpers_only_over_the_pipe(
    fresh_store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to read a process's command line and environment")
    spec = ",".join(f"{k}={v}" for k, v in fresh_store.keys.entries())
    monkeypatch.setenv("MOVECAR_KEYS", spec)
    populate(fresh_store)
    rules = CaseRules(fresh_store.clock.now(), fresh_store.contract.retention_years)
    checks = CaseChecks(
        fresh_store.engine, fresh_store._read, fresh_store.keys, rules, page=1, workers=2
    )
    try:
        (helper,) = checks.helpers
        pid = helper.process.pid
        seen = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        cases = checks.finish()
    finally:
        checks.close()
    assert b"MOVECAR_KEYS" not in seen
    for _key_id, key in fresh_store.keys.entries():
        assert key.encode() not in seen
    assert cases.cases == 7 and not cases.findings


def test_ranges_cover_every_case_once_however_seq_is_spread(fresh_store: SqlStore) -> None:
    for i in range(7):
        fresh_store.append(f"r-{i}", sample_history(f"r-{i}")[:1], expected_version=0)
    with fresh_store.engine.begin() as conn:  # an edited row far beyond the others
        conn.execute(sa.text("UPDATE mc_cases SET seq = 10000000000 WHERE case_id = 'r-3'"))
    ranges = list(case_ranges(fresh_store._read, 3))
    assert len(ranges) == 3
    with fresh_store._read() as conn:
        seqs = conn.execute(sa.text("SELECT seq FROM mc_cases ORDER BY seq")).scalars().all()
    covered = [s for s in seqs for after, upto in ranges if after < s <= upto]
    assert covered == seqs
    assert verify(fresh_store, workers=2, page=3) == verify(fresh_store, workers=1)


@pytest.mark.parametrize("bad", [0, 65, -1, True, 1.5, "2"])
def test_workers_must_be_a_count(fresh_store: SqlStore, bad: object) -> None:
    with pytest.raises(StorageInputError, match="workers"):
        verify(fresh_store, workers=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -5, 100_001, True, "10"])
def test_page_must_be_a_count(fresh_store: SqlStore, bad: object) -> None:
    with pytest.raises(InvalidInput, match="page"):
        verify(fresh_store, page=bad)  # type: ignore[arg-type]


def test_default_workers(fresh_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = fresh_store.engine
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert choose_workers(engine, None, lambda: 9_999) == 1  # small: not worth a process
    assert choose_workers(engine, None, lambda: 10_000) == audit_pool.MAX_AUTO_WORKERS
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert choose_workers(engine, None, lambda: 10**6) == 1
    # an engine another process cannot open the same way: this process alone
    plain = sa.create_engine(engine.url)
    try:
        assert choose_workers(plain, None, lambda: 10**6) == 1
        with pytest.raises(StorageInputError, match="make_engine"):
            choose_workers(plain, 2, lambda: 0)
    finally:
        plain.dispose()
