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

import contextlib
import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from movecar_adapters.crypto import DecryptionFailed, place
from movecar_adapters.signing import PublicKey
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.ledger_audit import (
    Anchor,
    Digests,
    Problem,
    append_leaves,
    check_holds,
    check_records,
    check_tree,
    compare_kind,
    given_checkpoints,
    stored_checkpoints,
)
from movecar_adapters.sql.store import PII_FIELDS, SqlStore
from movecar_core.case import Event
from movecar_core.codec import decode
from movecar_core.errors import InvalidInput, MoveCarError
from movecar_core.integrity import (
    GENESIS,
    StoredLink,
    chain_of_json,
    report_digest,
    verify_chain,
)
from movecar_core.ledger import Checkpoint, Leaf, LeafKind, TreeHead
from movecar_core.machine import fold
from movecar_core.reports import report_hash
from movecar_core.retention import PURGE_CLOCK_SKEW
from movecar_core.settlement import ServiceMonth


@attrs.frozen
class Finding:
    """One thing the audit found wrong: ``kind`` is ``case``, ``report`` or ``settlement``."""

    kind: str
    subject: str
    why: str
    #: The key a value could not be decrypted under, when that is the problem: if no value
    #: under that key opens, the key is wrong or missing (cannot verify), not the data.
    key_id: str | None = attrs.field(default=None, eq=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.why}"


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


class _Keys:
    """Counts, per key id, the stored values that opened and those that did not.

    A value that does not open where it is stored was moved there, altered, or the key is
    wrong: AES-GCM cannot say which. So it is counted, and a key none of whose values open
    is a wrong key (cannot verify), while a refused value under a key that opens others is
    tampering (a finding on its case).
    """

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.opened: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def decrypt(self, value: str, where: str) -> tuple[str, bool]:
        """The plaintext, and whether it was bound to ``where`` (False: a legacy token)."""
        keys = self.store.keys
        key_id = keys.key_id_of(value)
        bound = keys.is_bound(value)
        try:
            # The audit opens legacy tokens (the live engine does not) so that a database
            # not yet rotated is still checked; each is reported by the caller.
            plain = keys.decrypt(value, where) if bound else keys.decrypt_legacy(value)
        except DecryptionFailed as exc:
            self.refused[key_id] += 1
            raise _KeyFailure(key_id, str(exc)) from None
        self.opened[key_id] += 1
        return plain, bound

    def open_phones(
        self, case_id: str, version: int, type_name: str, payload: dict[str, Any]
    ) -> list[str]:
        """Decrypt the phones of one stored event in place, each at its own place; the
        fields that held a legacy (unbound) token, for the finding."""
        unbound = []
        for key in PII_FIELDS.get(type_name, ()):
            if isinstance(payload.get(key), str):
                where = place(case_id, version, type_name, key)
                payload[key], bound = self.decrypt(payload[key], where)
                if not bound:
                    unbound.append(f"v{version} {type_name}.{key}")
        return unbound

    def unverifiable(self) -> dict[str, str]:
        """Key ids none of whose values opened, with why."""
        configured = set(self.store.keys.key_ids)
        out = {}
        for key_id, n in self.refused.items():
            if self.opened[key_id]:
                continue
            if key_id in configured:
                out[key_id] = (
                    f"none of the {n} values stored under key {key_id!r} opens with the "
                    "configured key: a wrong key (cannot verify)"
                )
            else:
                out[key_id] = (
                    f"{n} values are stored under key {key_id!r}, which the configured keys "
                    "do not include (cannot verify)"
                )
        return out


class _KeyFailure(Exception):
    def __init__(self, key_id: str, why: str) -> None:
        super().__init__(why)
        self.key_id = key_id


def verify(
    store: SqlStore,
    *,
    page: int = 1000,
    expect_reports: Mapping[ServiceMonth, str] | None = None,
    checkpoints: Sequence[tuple[str, Checkpoint]] = (),
    public_key: PublicKey | None = None,
) -> AuditResult:
    """Check every case, report, settlement and ledger leaf in the store (see the module
    docstring and :mod:`movecar_adapters.sql.ledger_audit`).

    ``expect_reports`` maps a month (``ServiceMonth(2025, 3)``) to the digest Party A
    received for it. ``checkpoints`` are ``(label, checkpoint)`` pairs Party A holds; they
    need the ``public_key`` they were signed with, which also checks the checkpoints kept
    in the database.
    A row the database cannot even hand back (a malformed time, say) is a finding naming
    it, and the audit goes on with the rest.
    """
    if checkpoints and public_key is None:
        raise InvalidInput("checkpoints can only be verified with the public key")
    findings: list[Finding] = []
    keys = _Keys(store)
    want_leaves = Digests()
    n_cases = n_events = 0
    for rows, stored, purges, broken in _pages(store, page):
        findings.extend(broken)
        for row in rows:
            n_cases += 1
            evs = stored.get(row.case_id, [])
            n_events += len(evs)
            leaves: list[Leaf] = []
            try:
                findings.extend(
                    _check_case(store, keys, row, evs, purges.get(row.case_id), leaves=leaves)
                )
            except Exception as exc:  # one bad row is one finding; the audit goes on
                findings.append(
                    Finding("case", str(row.case_id), f"row unreadable ({type(exc).__name__})")
                )
            for item in leaves:
                want_leaves.add_leaf(item)
    findings.extend(_ledger_findings(store, want_leaves, checkpoints, public_key))
    with store._read() as conn:
        orphans = conn.execute(
            sa.select(t.events.c.case_id)
            .where(~sa.exists().where(t.cases.c.case_id == t.events.c.case_id))
            .distinct()
        ).scalars()
        findings.extend(Finding("case", cid, "events without a state row") for cid in orphans)
        lost = conn.execute(
            sa.select(t.purge_log.c.case_id).where(
                ~sa.exists().where(t.cases.c.case_id == t.purge_log.c.case_id)
            )
        ).scalars()
        findings.extend(Finding("case", cid, "purged case's tombstone deleted") for cid in lost)
    expected = {str(month): digest for month, digest in (expect_reports or {}).items()}
    report_findings, n_reports = _check_reports(store, expected)
    findings.extend(report_findings)
    blocked = keys.unverifiable()
    kept = tuple(f for f in findings if f.key_id is None or f.key_id not in blocked)
    return AuditResult(kept, n_cases, n_events, n_reports, tuple(blocked.values()))


Page = tuple[list[Any], dict[str, list[Any]], dict[str, Any], list[Finding]]


def _pages(store: SqlStore, page: int) -> Iterator[Page]:
    """Pages of state rows with their events and purge-log rows, and findings for rows
    that cannot be read (each read again alone, so one bad row spoils only itself)."""
    last = -1
    c, e, p = t.cases, t.events, t.purge_log
    while True:
        with store._read() as conn:
            keys = conn.execute(
                sa.select(c.c.seq, c.c.case_id).where(c.c.seq > last).order_by(c.c.seq).limit(page)
            ).all()
            if not keys:
                return
            broken: list[Finding] = []
            rows = _each_or_all(
                conn,
                sa.select(c).where(c.c.seq.in_([k.seq for k in keys])).order_by(c.c.seq),
                lambda keys=keys: [  # type: ignore[misc]
                    (str(k.case_id), sa.select(c).where(c.c.seq == k.seq)) for k in keys
                ],
                broken,
                "state row unreadable",
            )
            ids = [r.case_id for r in rows]
            stored: dict[str, list[Any]] = defaultdict(list)
            for ev in _each_or_all(
                conn,
                sa.select(e).where(e.c.case_id.in_(ids)).order_by(e.c.case_id, e.c.version),
                lambda ids=ids: [  # type: ignore[misc]
                    (cid, sa.select(e).where(e.c.case_id == cid).order_by(e.c.version))
                    for cid in ids
                ],
                broken,
                "events unreadable",
            ):
                stored[ev.case_id].append(ev)
            spoiled = {f.subject for f in broken}
            purges = {x.case_id: x for x in conn.execute(sa.select(p).where(p.c.case_id.in_(ids)))}
        yield [r for r in rows if r.case_id not in spoiled], stored, purges, broken
        last = keys[-1].seq


def _each_or_all(
    conn: sa.Connection,
    whole: sa.Select[Any],
    parts: Callable[[], list[tuple[str, sa.Select[Any]]]],
    broken: list[Finding],
    why: str,
) -> list[Any]:
    """``whole``'s rows; if one cannot be read, each of ``parts()`` alone (built only
    then: they are a query per row)."""
    try:
        return list(conn.execute(whole).all())
    except (ValueError, TypeError, ArithmeticError, sa.exc.StatementError):
        rows: list[Any] = []
        for subject, query in parts():
            try:
                rows.extend(conn.execute(query).all())
            except (ValueError, TypeError, ArithmeticError, sa.exc.StatementError) as exc:
                broken.append(Finding("case", subject, f"{why} ({type(exc).__name__})"))
        return rows


def _ledger_findings(
    store: SqlStore,
    expected: Digests,
    checkpoints: Sequence[tuple[str, Checkpoint]],
    public_key: PublicKey | None,
) -> list[Finding]:
    """The ledger's checks (:mod:`movecar_adapters.sql.ledger_audit`), each run so that a
    row it cannot read is one finding and the others still run."""
    problems: list[Problem] = []
    anchors: list[Anchor] = []

    def safely(what: str, check: Callable[[], list[Problem] | None]) -> None:
        try:
            problems.extend(check() or ())
        except (MoveCarError, ValueError, TypeError, ArithmeticError, sa.exc.StatementError) as e:
            problems.append(("ledger", what, f"unreadable ({type(e).__name__})"))

    def cps() -> list[Problem]:
        stored, out = stored_checkpoints(store, public_key)
        given, more = given_checkpoints(checkpoints, public_key)
        anchors.extend([*stored, *given, *_report_anchors(store)])
        return [*out, *more]

    stored = Digests()
    safely("records", lambda: check_records(store, expected))
    safely("checkpoints", cps)
    safely("tree", lambda: check_tree(store, anchors, stored))
    differing = frozenset(expected.differing(stored))
    for kind in sorted(differing):
        # The rows and the leaves of this kind differ: compare them one by one to name how.
        if kind in LeafKind.__members__.values():
            safely(kind, lambda kind=kind: compare_kind(store, LeafKind(kind)))  # type: ignore[misc]
        else:
            problems.append(("ledger", kind[:20], "leaves of an unknown kind"))
    safely("legal holds", lambda: check_holds(store))
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


def _check_case(
    store: SqlStore, keys: _Keys, row: Any, evs: list[Any], purge: Any, *, leaves: list[Leaf]
) -> list[Finding]:
    """The case's findings; ``leaves`` gets the ledger leaf each stored event must have
    (from its stored hash: a rewritten event whose hash was recomputed differs from it)."""
    cid = row.case_id

    def bad(why: str) -> list[Finding]:
        return [Finding("case", cid, why)]

    if type(row.version) is not int:  # SQLite keeps any text in an INTEGER column
        return bad(f"state row version {row.version!r:.40} is not a number")
    if row.purged_at is not None:
        return _check_purged(store, row, evs, purge)
    if purge is not None:
        return bad("listed in the purge log but not purged")
    if not evs:
        return bad("state row without events: the events were deleted")
    links: list[StoredLink] = []
    events: list[Event] = []
    unreadable: list[Finding] = []
    payloads = _payloads(cid, evs, leaves)
    unbound: list[str] = []
    plain: list[str] = []  # each payload's canonical plaintext JSON, for the chain
    for ev, payload in zip(evs, payloads, strict=True):
        if isinstance(payload, str):
            return bad(f"event v{ev.version} unreadable: {payload}")
        try:
            fields = PII_FIELDS.get(ev.type_name)
            if fields is None:  # nothing sealed: the stored JSON is the plaintext's
                plain.append(ev.payload)
            else:
                sealed = {k: payload[k] for k in fields if k in payload}
                unbound += keys.open_phones(cid, ev.version, ev.type_name, payload)
                plain.append(_plain_json(ev.payload, sealed, payload))
        except _KeyFailure as exc:
            return [Finding("case", cid, f"event v{ev.version} unreadable: {exc}", exc.key_id)]
        except (ValueError, RecursionError, DecryptionFailed) as exc:
            # RecursionError: JSON nested deeper than the parser goes (a hand-made row)
            return bad(f"event v{ev.version} unreadable: {type(exc).__name__}: {exc}")
        links.append(StoredLink(ev.version, ev.type_name, payload, ev.hash))
        try:
            events.append(decode(cid, ev.type_name, payload))
        except MoveCarError as exc:
            unreadable += bad(f"event v{ev.version}: {exc}")
    if not _chain_holds(cid, links, plain):
        broken = verify_chain(cid, links)
        if broken is not None:
            return bad(f"chain breaks at v{broken.version}: {broken.why}")
    if unreadable:
        return unreadable
    out = []
    if unbound:
        # Not opened by the engine, and a way around the binding while it stays: a value
        # that could have been copied in from any case. Rotation rebinds it.
        out += bad(
            f"{len(unbound)} phone value(s) not bound to their place ({', '.join(unbound)}; "
            "written before schema 0003): run `movecar keys rotate`"
        )
    if len(links) != row.version:
        out += bad(f"state row says version {row.version}, {len(links)} events stored")
    if links[-1].hash != row.head_hash:
        out += bad("last event's hash is not the state row's head hash")
    if links[0].hash != row.opened_hash:
        out += bad("first event's hash is not the state row's opened hash")
    try:
        record = fold(events)
    except MoveCarError as exc:
        return [*out, *bad(f"events do not fold: {exc}")]
    want = (record.state.value, record.version, record.opened_at, record.closed_at, record.plate)
    have = (row.state, row.version, row.opened_at, row.closed_at, row.plate)
    if want != have:
        out += bad(f"state row {have!r} is not the fold of its events {want!r}")
    return out


def _plain_json(stored: str, sealed: dict[str, Any], opened: dict[str, Any]) -> str:
    """The stored canonical JSON with each sealed phone replaced by its plaintext: the
    canonical JSON of the opened payload, without encoding it again (tokens are unique:
    a random nonce each)."""
    for key, token in sealed.items():
        if isinstance(token, str):
            stored = stored.replace(
                json.dumps(token), json.dumps(opened[key], ensure_ascii=False), 1
            )
    return stored


def _chain_holds(cid: str, links: list[StoredLink], plain: list[str]) -> bool:
    """Does every stored hash equal the chain over the events' plaintext? The fast form
    of :func:`~movecar_core.integrity.verify_chain` (which names the break when not)."""
    if [link.version for link in links] != list(range(1, len(links) + 1)):
        return False
    hashes = chain_of_json(GENESIS, cid, 1, [link.type_name for link in links], plain)
    return hashes == [link.hash for link in links]


def _payloads(cid: str, evs: list[Any], leaves: list[Leaf]) -> list[dict[str, Any] | str]:
    """Each event's parsed payload, or why it does not parse; and the ledger leaves first
    (one per append): they need no key (the time is in clear, the hash is stored), so a
    wrong key leaves the ledger checks intact."""
    payloads: list[dict[str, Any] | str] = []
    stamped: list[tuple[int, Any, dt.datetime | None, str]] = []
    for ev in evs:
        when = None
        try:
            parsed = json.loads(ev.payload)
        except (ValueError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the parser goes (a hand-made row)
            payloads.append(f"{type(exc).__name__}: {exc}")
        else:
            if isinstance(parsed, dict):
                payloads.append(parsed)
                at = parsed.get("at")
                with contextlib.suppress(ValueError):
                    when = dt.datetime.fromisoformat(at if isinstance(at, str) else "")
                    if when.utcoffset() is None:
                        when = None
            else:
                payloads.append("not an object")
        stamped.append((ev.version, ev.batch, when, ev.hash))
    leaves.extend(x for x in append_leaves(cid, stamped) if not isinstance(x, str))
    return payloads


def _check_purged(store: SqlStore, row: Any, evs: list[Any], purge: Any) -> list[Finding]:
    """A purged case: only its tombstone left, matching the purge log, and purged lawfully."""
    out: list[Finding] = []
    cid = row.case_id
    if evs:
        out.append(Finding("case", cid, f"{len(evs)} events remain after the purge"))
    if purge is None:
        out.append(Finding("case", cid, "purged without a purge-log entry"))
    elif (purge.anchor_version, purge.anchor_hash) != (row.version, row.head_hash):
        out.append(Finding("case", cid, "tombstone does not match the purge log's anchor"))
    elif (purge.closed_at, purge.purged_at) != (row.closed_at, row.purged_at):
        out.append(
            Finding("case", cid, "tombstone's closed or purge time differs from the purge log's")
        )
    return out + _early_purge(store, row)


def _early_purge(store: SqlStore, row: Any) -> list[Finding]:
    """二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": a tombstone whose times say
    it was purged less than 3 years after closing, or whose times cannot be true.

    The times are the tombstone's own, which an attacker may have edited, so each way to
    make an early purge look lawful is checked: a closing time moved back before the case
    opened, or a purge time moved into the future (a forged ``--now`` or clock, which the
    purge itself refuses beyond :data:`~movecar_core.retention.PURGE_CLOCK_SKEW`), judged by
    the audit's own clock (the store's).
    """
    cid = row.case_id
    if row.closed_at is None:
        return [Finding("case", cid, "purged while open (二(四): 3 years after closing)")]
    out = []
    if not store.retention_due(row.closed_at, row.purged_at):
        out.append(
            Finding("case", cid, "purged before the retention period (二(四): 3 years) ended")
        )
    if row.closed_at < row.opened_at:
        out.append(Finding("case", cid, "tombstone says it closed before it opened"))
    now = store.clock.now()
    if row.purged_at > now + PURGE_CLOCK_SKEW:
        out.append(
            Finding(
                "case",
                cid,
                f"purged at {row.purged_at.isoformat()}, later than the audit's clock "
                f"({now.isoformat()}): a forged time (二(四): 3 years after closing)",
            )
        )
    return out


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
            if rep.hash != report_hash(
                rep.previous_hash,
                month,
                rep.inbound_calls,
                rep.billable_calls,
                rep.digest,
                tree=tree,
            ):
                out.append(Finding("report", rep.month, "stored report does not match its hash"))
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
