"""``movecar audit verify``: recompute every hash and name what was tampered with.

七(三) asks that data be protected from "篡改、丢失"; 五(三) lets Party A withhold the month's
fee "如发现有弄虚作假的". The audit recomputes, without trusting anything stored:

* each case's event chain (:func:`movecar_core.integrity.verify_chain`) over the decrypted
  plaintext: a changed, inserted, deleted or reordered event breaks it;
* that every phone opens in its place (七(三): the associated data names the case, the
  event and the field): a ciphertext copied in from elsewhere is a finding on the case it
  was copied into, and so is a legacy token not yet bound to its place (written before
  schema 0003; ``movecar keys rotate`` rebinds it);
* that the chain ends where the case's state row says (version, head hash), so deleting
  the *last* events is found too, and that the state row equals the fold of the events;
* that a purged case has no events left, was purged only after the retention period
  (by times that can be true: closed after it opened, purged no later than the audit's
  clock), and that its tombstone matches the anchor and the times in the purge log;
* each monthly report's digest (recomputed from the cases it counts), its counts, and the
  chain of reports, whose head is kept separately so deleting the latest report shows;
* each settlement against its report.

What an in-database chain cannot prove on its own: an attacker with write access who
recomputes *every* hash consistently. Against that, the report digests must leave the
database: they go to Party A with each monthly report (三), and ``audit verify
--expect-report MONTH=DIGEST`` checks the stored report against what Party A received.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs
import sqlalchemy as sa

from movecar_adapters.signing import PublicKey
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.audit_cases import CaseRules, Finding
from movecar_adapters.sql.audit_pool import CaseChecks, choose_workers
from movecar_adapters.sql.evidence import stored_refusals
from movecar_adapters.sql.incidents import check_incident_log
from movecar_adapters.sql.ledger_audit import (
    Anchor,
    Digests,
    Problem,
    check_holds,
    check_records,
    check_tree,
    compare_kind,
    given_checkpoints,
    stored_checkpoints,
)
from movecar_adapters.sql.requesters import refusals_in
from movecar_adapters.sql.store import SqlStore
from movecar_core.errors import InvalidInput, MoveCarError
from movecar_core.integrity import GENESIS, report_digest
from movecar_core.ledger import Checkpoint, LeafKind, TreeHead
from movecar_core.reports import report_hash
from movecar_core.requesters import RefusalCounts
from movecar_core.settlement import ServiceMonth

__all__ = ["AuditResult", "Finding", "verify"]


@attrs.frozen
class AuditResult:
    """What ``verify`` found. ``unverifiable`` names keys that open none of the values
    stored under them (a wrong or missing key): the data could not be checked, which is
    not the same as tampering (``movecar audit verify`` exits 3, not 1)."""

    findings: tuple[Finding, ...]
    cases: int
    events: int
    reports: int
    unverifiable: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings and not self.unverifiable

    @property
    def tampered_cases(self) -> frozenset[str]:
        return frozenset(f.subject for f in self.findings if f.kind == "case")

    @property
    def tampered_reports(self) -> frozenset[str]:
        return frozenset(f.subject for f in self.findings if f.kind in ("report", "settlement"))


def verify(
    store: SqlStore,
    *,
    page: int = 1000,
    expect_reports: Mapping[ServiceMonth, str] | None = None,
    checkpoints: Sequence[tuple[str, Checkpoint]] = (),
    public_key: PublicKey | None = None,
    workers: int | None = None,
) -> AuditResult:
    """Check every case, report, settlement and ledger leaf in the store (see the module
    docstring and :mod:`movecar_adapters.sql.ledger_audit`).

    ``expect_reports`` maps a month (``ServiceMonth(2025, 3)``) to the digest Party A
    received for it. ``checkpoints`` are ``(label, checkpoint)`` pairs Party A holds; they
    need the ``public_key`` they were signed with, which also checks the checkpoints kept
    in the database.
    A row the database cannot even hand back (a malformed time, say) is a finding naming
    it, and the audit goes on with the rest.

    ``workers`` processes check the cases, ``page`` cases at a time
    (:mod:`movecar_adapters.sql.audit_pool`); by default one per core, up to four, for a
    database of 10,000 cases or more, and only this process below that. The result is
    the same whatever the number.
    """
    if checkpoints and public_key is None:
        raise InvalidInput("checkpoints can only be verified with the public key")
    if type(page) is not int or not 1 <= page <= 100_000:
        raise InvalidInput("page must be a whole number from 1 to 100000")
    n = choose_workers(store.engine, workers, lambda: _count_cases(store))
    rules = CaseRules(store.clock.now(), store.contract.retention_years)
    checks = CaseChecks(store.engine, store._read, store.keys, rules, page=page, workers=n)
    try:
        # While helpers check cases, this process checks the rest; then joins them.
        records = Digests()
        stored = Digests()
        ledger = _ledger_records(store, checkpoints, public_key, records, stored)
        orphans = _orphans(store)
        expected = {str(month): digest for month, digest in (expect_reports or {}).items()}
        report_findings, n_reports = _check_reports(store, expected)
        cases = checks.finish()
    finally:
        checks.close()
    records.add_all(cases.leaves)
    ledger += _ledger_leaves(store, records, stored)
    findings = [*cases.findings, *_as_findings(ledger), *orphans, *report_findings]
    blocked = cases.unverifiable(store.keys.key_ids)
    kept = tuple(f for f in findings if f.key_id is None or f.key_id not in blocked)
    return AuditResult(kept, cases.cases, cases.events, n_reports, tuple(blocked.values()))


def _count_cases(store: SqlStore) -> int:
    with store._read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.cases)).scalar() or 0)


def _orphans(store: SqlStore) -> list[Finding]:
    """Events and look-up rows whose case has no state row, and purge-log rows whose
    tombstone is gone."""
    with store._read() as conn:
        orphans = conn.execute(
            sa.select(t.events.c.case_id)
            .where(~sa.exists().where(t.cases.c.case_id == t.events.c.case_id))
            .distinct()
        ).scalars()
        out = [Finding("case", cid, "events without a state row") for cid in orphans]
        lost = conn.execute(
            sa.select(t.purge_log.c.case_id).where(
                ~sa.exists().where(t.cases.c.case_id == t.purge_log.c.case_id)
            )
        ).scalars()
        out.extend(Finding("case", cid, "purged case's tombstone deleted") for cid in lost)
        strays = conn.execute(
            sa.select(t.owner_lookups.c.case_id)
            .where(~sa.exists().where(t.cases.c.case_id == t.owner_lookups.c.case_id))
            .distinct()
        ).scalars()
        out.extend(Finding("case", cid, "look-up rows without a state row") for cid in strays)
    return out


def _safely(problems: list[Problem], what: str, check: Callable[[], list[Problem] | None]) -> None:
    """Run one of the ledger's checks so that a row it cannot read is one finding and the
    others still run."""
    try:
        problems.extend(check() or ())
    except (MoveCarError, ValueError, TypeError, ArithmeticError, sa.exc.StatementError) as e:
        problems.append(("ledger", what, f"unreadable ({type(e).__name__})"))


def _ledger_records(
    store: SqlStore,
    checkpoints: Sequence[tuple[str, Checkpoint]],
    public_key: PublicKey | None,
    records: Digests,
    stored: Digests,
) -> list[Problem]:
    """The ledger's checks that need no case (:mod:`movecar_adapters.sql.ledger_audit`):
    ``records`` gets the leaves the other evidentiary records call for, ``stored`` the
    leaves stored, and the tree is checked against every checkpoint and report head."""
    problems: list[Problem] = []
    anchors: list[Anchor] = []

    def cps() -> list[Problem]:
        kept, out = stored_checkpoints(store, public_key)
        given, more = given_checkpoints(checkpoints, public_key)
        anchors.extend([*kept, *given, *_report_anchors(store)])
        return [*out, *more]

    _safely(problems, "records", lambda: check_records(store, records))
    _safely(problems, "incidents", lambda: check_incident_log(store))
    _safely(problems, "checkpoints", cps)
    _safely(problems, "tree", lambda: check_tree(store, anchors, stored))
    return problems


def _ledger_leaves(store: SqlStore, expected: Digests, stored: Digests) -> list[Problem]:
    """The leaves the records call for against those stored (one by one only for a kind
    whose digests differ, to name how), and the legal holds against their flags."""
    problems: list[Problem] = []
    for kind in sorted(expected.differing(stored)):
        if kind in LeafKind.__members__.values():
            _safely(problems, kind, lambda kind=kind: compare_kind(store, LeafKind(kind)))  # type: ignore[misc]
        else:
            problems.append(("ledger", kind[:20], "leaves of an unknown kind"))
    _safely(problems, "legal holds", lambda: check_holds(store))
    return problems


def _as_findings(problems: list[Problem]) -> list[Finding]:
    out = []
    for kind, subject, why in problems:
        if kind == LeafKind.EVENT.value:
            case_id, _, version = subject.rpartition("/")
            out.append(Finding("case", case_id, f"event v{version} {why}"))
        else:
            out.append(Finding(kind, subject, why))
    return out


def _report_anchors(store: SqlStore) -> list[Anchor]:
    r = t.monthly_reports
    with store._read() as conn:
        rows = conn.execute(
            sa.select(r.c.month, r.c.tree_size, r.c.tree_root).where(r.c.tree_size.is_not(None))
        ).all()
    return [Anchor(f"{x.month} tree head", int(x.tree_size), x.tree_root, None) for x in rows]


def _check_reports(store: SqlStore, expect: Mapping[str, str]) -> tuple[list[Finding], int]:
    out: list[Finding] = []
    r, c, s = t.monthly_reports, t.cases, t.settlements
    with store._read() as conn:
        reports = conn.execute(sa.select(r).order_by(r.c.month)).all()
        head = conn.execute(
            sa.select(t.meta.c.value).where(t.meta.c.name == "report_head")
        ).scalar()
        previous = GENESIS
        seen: set[str] = set()
        for rep in reports:
            try:
                month = ServiceMonth.parse(rep.month)
            except MoveCarError:
                out.append(Finding("report", f"{rep.month!r:.20}", "malformed month: not YYYY-MM"))
                continue
            start, end = month.bounds()
            items = conn.execute(
                sa.select(c.c.case_id, c.c.opened_hash).where(
                    c.c.opened_at >= start, c.c.opened_at < end
                )
            ).all()
            digest = report_digest((x.case_id, 1, x.opened_hash) for x in items)
            if rep.previous_hash != previous:
                out.append(Finding("report", rep.month, "report chain broken before this report"))
                gap = month.previous()
                while str(gap) not in seen and (seen or gap == month.previous()):
                    out.append(
                        Finding("report", str(gap), "report deleted (gap in the monthly chain)")
                    )
                    gap = gap.previous()
            seen.add(rep.month)
            tree = None if rep.tree_size is None else TreeHead(int(rep.tree_size), rep.tree_root)
            refusals = stored_refusals(rep)
            if rep.hash != report_hash(
                rep.previous_hash,
                month,
                rep.inbound_calls,
                rep.billable_calls,
                rep.digest,
                tree=tree,
                refusals=refusals,
            ):
                out.append(Finding("report", rep.month, "stored report does not match its hash"))
            held = refusals_in(conn, month)  # none for a month before schema 0007
            if (refusals or RefusalCounts()) != held:
                out.append(
                    Finding(
                        "report",
                        rep.month,
                        f"refused requests {(refusals or RefusalCounts()).as_dict()}, the "
                        f"store now holds {held.as_dict()}",
                    )
                )
            if digest != rep.digest:
                out.append(
                    Finding("report", rep.month, "the events it counts changed (digest differs)")
                )
            if (rep.inbound_calls, rep.billable_calls) != (len(items), len(items)):
                out.append(
                    Finding(
                        "report",
                        rep.month,
                        f"counts {rep.inbound_calls}/{rep.billable_calls}, cases {len(items)}",
                    )
                )
            if rep.month in expect and expect[rep.month] != rep.digest:
                out.append(Finding("report", rep.month, "digest differs from the one sent"))
            previous = rep.hash
        missing = set(expect) - {rep.month for rep in reports}
        out.extend(Finding("report", m, "report sent to Party A is missing") for m in missing)
        if head is None and reports:
            out.append(Finding("report", reports[-1].month, "report chain head is missing"))
        elif head is not None:
            month, _, h = head.partition(":")
            if not reports or (reports[-1].month, reports[-1].hash) != (month, h):
                out.append(Finding("report", month, "latest report deleted or replaced"))
        by_month = {rep.month: rep for rep in reports}
        for st in conn.execute(sa.select(s)):
            match = by_month.get(st.month)
            if match is None or (st.report_digest, st.billable_calls) != (
                match.digest,
                match.billable_calls,
            ):
                out.append(Finding("settlement", st.month, "does not match its report"))
    return out, len(reports)
