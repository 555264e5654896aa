"""`audit verify` finds every change, deletion or reordering of stored events and reports."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movecar_adapters.sql import SqlStore, verify
from movecar_adapters.sql import schema as t
from movecar_core.calendar import SHANGHAI
from movecar_core.errors import MonthAlreadyReported, SettlementError
from movecar_core.reports import RecordedSettlement
from movecar_core.settlement import ServiceMonth
from movecar_core.testing.contracts import sample_history

FEB = dt.datetime(2025, 2, 10, 9, 0, tzinfo=SHANGHAI)
MAR = dt.datetime(2025, 3, 10, 9, 0, tzinfo=SHANGHAI)
CASES = {f"feb-{i}": FEB + dt.timedelta(hours=i) for i in range(3)} | {
    f"mar-{i}": MAR + dt.timedelta(hours=i) for i in range(3)
}


def populate(store: SqlStore) -> None:
    for case_id, at in CASES.items():
        history = sample_history(case_id, at=at)
        store.append(case_id, history[:2], expected_version=0)
        store.append(case_id, history[2:], expected_version=2)
    # one open case, opened in March, not yet closed
    store.append("mar-open", sample_history("mar-open", at=MAR)[:3], expected_version=0)
    at = dt.datetime(2025, 4, 2, 9, 0, tzinfo=SHANGHAI)
    feb = store.write_report(ServiceMonth(2025, 2), at=at)
    store.write_report(ServiceMonth(2025, 3), at=at)
    store.write_settlement(
        RecordedSettlement(
            ServiceMonth(2025, 2), 3, Decimal("1.90"), Decimal("5.70"), feb.digest, at
        )
    )


def rows(store: SqlStore, table: sa.Table) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


Undo = Callable[[], None]


def update(store: SqlStore, table: sa.Table, where: dict[str, Any], values: dict[str, Any]) -> Undo:
    cond = [table.c[k] == v for k, v in where.items()]
    with store.engine.begin() as conn:
        before = dict(conn.execute(sa.select(table).where(*cond)).one()._mapping)
        conn.execute(table.update().where(*cond).values(**values))
    old = {k: before[k] for k in values}

    def undo() -> None:
        with store.engine.begin() as conn:
            conn.execute(table.update().where(*cond).values(**old))

    return undo


def delete(store: SqlStore, table: sa.Table, where: dict[str, Any]) -> Undo:
    cond = [table.c[k] == v for k, v in where.items()]
    with store.engine.begin() as conn:
        before = [dict(r._mapping) for r in conn.execute(sa.select(table).where(*cond))]
        conn.execute(table.delete().where(*cond))

    def undo() -> None:
        if before:
            with store.engine.begin() as conn:
                conn.execute(table.insert(), before)

    return undo


@st.composite
def tampering(  # noqa: PLR0915 - one branch per kind of tampering
    draw: st.DrawFn, store: SqlStore
) -> tuple[str, set[str], Undo]:
    """One change to the stored data: (description, subjects that must be named, undo)."""
    events = sorted(rows(store, t.events), key=lambda r: (r["case_id"], r["version"]))
    reports = sorted(rows(store, t.monthly_reports), key=lambda r: r["month"])
    key = ("case_id", "version")
    kind = draw(
        st.sampled_from(
            ["edit", "retype", "rehash", "delete", "swap", "state", "report", "drop_report",
             "swap_reports", "drop_case"]
        )
    )  # fmt: skip
    ev = draw(st.sampled_from(events))
    where = {k: ev[k] for k in key}
    cid = ev["case_id"]
    if kind == "edit":
        payload = json.loads(ev["payload"])
        field = draw(st.sampled_from(sorted(payload)))
        value = payload[field]
        if isinstance(value, bool) or value is None:
            new: Any = "x" if value is None else not value
        elif isinstance(value, int):
            new = value + draw(st.integers(1, 5))
        else:
            new = value + draw(st.text(min_size=1, max_size=3))
        payload[field] = new
        return kind, {cid}, update(store, t.events, where, {"payload": json.dumps(payload)})
    if kind == "retype":
        other = draw(st.sampled_from(["MoveConfirmed", "CaseCancelled", "DisputeRaised"]))
        return kind, {cid}, update(store, t.events, where, {"type_name": other})
    if kind == "rehash":
        return kind, {cid}, update(store, t.events, where, {"hash": "f" * 64})
    if kind == "delete":
        return kind, {cid}, delete(store, t.events, where)
    if kind == "swap":
        other_ev = draw(st.sampled_from([e for e in events if e is not ev]))
        cols = ("type_name", "payload", "hash")
        first = update(store, t.events, where, {c: other_ev[c] for c in cols})
        second = update(store, t.events, {k: other_ev[k] for k in key}, {c: ev[c] for c in cols})

        def undo_swap() -> None:
            second()
            first()

        return kind, {cid, other_ev["case_id"]}, undo_swap
    if kind == "state":
        column, value = draw(
            st.sampled_from([("state", "moved"), ("version", 9), ("plate", "苏E00000")])
        )
        return kind, {cid}, update(store, t.cases, {"case_id": cid}, {column: value})
    rep = draw(st.sampled_from(reports))
    month = rep["month"]
    if kind == "report":
        column, value = draw(
            st.sampled_from(
                [("inbound_calls", rep["inbound_calls"] + 1), ("billable_calls", 0),
                 ("digest", "0" * 64), ("previous_hash", "1" * 64)]
            )
        )  # fmt: skip
        return kind, {month}, update(store, t.monthly_reports, {"month": month}, {column: value})
    if kind == "drop_report":
        settled = delete(store, t.settlements, {"month": month})
        dropped = delete(store, t.monthly_reports, {"month": month})

        def undo_drop() -> None:
            dropped()
            settled()

        return kind, {month}, undo_drop
    if kind == "swap_reports":
        a, b = reports
        cols = ("inbound_calls", "billable_calls", "digest", "previous_hash", "hash")
        first = update(store, t.monthly_reports, {"month": a["month"]}, {c: b[c] for c in cols})
        second = update(store, t.monthly_reports, {"month": b["month"]}, {c: a[c] for c in cols})

        def undo_reports() -> None:
            second()
            first()

        return kind, {a["month"], b["month"]}, undo_reports
    # drop_case: a whole case (events, look-ups, state row) vanishes; its month's report says so
    gone = [delete(store, tb, {"case_id": cid}) for tb in (t.owner_lookups, t.outbox, t.events)]
    gone.append(delete(store, t.cases, {"case_id": cid}))
    month = "2025-02" if cid.startswith("feb") else "2025-03"

    def undo_case() -> None:
        for undo in reversed(gone):
            undo()

    return kind, {month}, undo_case


EXAMPLES = {"sqlite": 200, "postgresql": 60, "mariadb": 60}


def test_audit_detects_every_tampering(fresh_store: SqlStore, backend: str) -> None:
    populate(fresh_store)
    clean = verify(fresh_store)
    assert clean.ok, clean.findings
    assert (clean.cases, clean.events, clean.reports) == (7, 33, 2)

    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        what, subjects, undo = data.draw(tampering(fresh_store))
        try:
            result = verify(fresh_store)
            named = result.tampered_cases | result.tampered_reports
            assert not result.ok, what
            assert subjects <= named, (what, subjects, result.findings)
        finally:
            undo()
        assert verify(fresh_store).ok

    check()


def test_expected_digest_from_party_a(fresh_store: SqlStore) -> None:
    populate(fresh_store)
    [feb, mar] = fresh_store.reports()
    assert verify(fresh_store, expect_reports={ServiceMonth(2025, 2): feb.digest}).ok
    bad = verify(
        fresh_store,
        expect_reports={ServiceMonth(2025, 3): feb.digest, ServiceMonth(2025, 4): mar.digest},
    )
    assert bad.tampered_reports == {"2025-03", "2025-04"}


def test_reports_count_billable_calls_by_month(fresh_store: SqlStore) -> None:
    populate(fresh_store)
    [feb, mar] = fresh_store.reports()
    assert (feb.month, feb.billable_calls, mar.billable_calls) == (ServiceMonth(2025, 2), 3, 4)
    assert fresh_store.count_opened(*ServiceMonth(2025, 3).bounds()) == 4
    assert mar.previous_hash == feb.hash
    at = dt.datetime(2025, 6, 1, tzinfo=SHANGHAI)
    with pytest.raises(MonthAlreadyReported, match="reports exist up to 2025-03"):
        fresh_store.write_report(ServiceMonth(2025, 1), at=at)
    with pytest.raises(SettlementError, match="the next report due is 2025-04"):
        fresh_store.write_report(ServiceMonth(2025, 5), at=at)


def test_chain_hash_of_json_is_chain_hash() -> None:
    from hypothesis import given as given_

    from movecar_core.integrity import canonical_json, chain_hash, chain_hash_of_json

    payload_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text())

    @given_(
        prev=st.text(), cid=st.text(), version=st.integers(0, 10**6), name=st.text(),
        payload=st.dictionaries(st.text(), payload_values),
    )  # fmt: skip
    def same(prev: str, cid: str, version: int, name: str, payload: dict[str, Any]) -> None:
        assert chain_hash_of_json(prev, cid, version, name, canonical_json(payload)) == (
            chain_hash(prev, cid, version, name, payload)
        )

    same()
