"""The audit's ledger checks: rows against leaves, the tree against signed checkpoints.

With what Party A holds (the public key and the checkpoints it received), these find any
change to a record a checkpoint covers, even by someone who can rewrite every table and
run the engine with its data-encryption keys:

* every evidentiary row has its leaf, equal to the leaf recomputed from the row (a
  changed column changes the leaf; an inserted row has none);
* every leaf has its row, unless its case was lawfully purged (二(四)) and the purge is
  itself a leaf;
* the sequenced leaves have dense indices, and their Merkle tree reproduces every
  checkpoint, stored or given, and every monthly report's tree head; each checkpoint's
  signature verifies under the public key;
* no record is dated before a checkpoint it is not part of (a backdated fabrication);
* each state row's legal-hold flag is the latest hold record of its case.

Event leaves are compared where the case's chain is verified (:mod:`.audit`), the other
kinds here, table by table; both go through :class:`LeafMatcher`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa

from movecar_adapters.signing import PublicKey
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.store import SqlStore
from movecar_core.errors import MoveCarError
from movecar_core.ledger import (
    PURGEABLE,
    Checkpoint,
    CompactTree,
    Leaf,
    LeafKind,
    access_leaf,
    event_leaf,
    legal_hold_leaf,
    owner_lookup_leaf,
    purge_leaf,
    recording_leaf,
    report_leaf,
    settlement_leaf,
    utc_text,
)

#: Subjects per ``IN`` list when leaves are looked up.
BATCH = 1000

#: (kind, subject, why): one thing found; the audit turns it into its ``Finding``.
Problem = tuple[str, str, str]


_MOD = 1 << 256
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class Digests:
    """An order-free digest per kind of a set of leaves: the sum, modulo 2^256, of the
    SHA-256 of each leaf's columns (kind, subject, hash, date, case).

    The audit computes one from the rows (what the leaves must be) and one from the
    ledger table (what they are), each in one sequential pass; equal digests mean equal
    sets, so the one-by-one comparison (:class:`LeafMatcher`) runs only for a kind whose
    digests differ, to name what differs.
    """

    def __init__(self) -> None:
        self.sums: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def add(
        self, kind: str, subject: str, leaf_hash: str, at: dt.datetime, case_id: str | None
    ) -> None:
        # the instant as whole microseconds since 1970: one spelling for every zone
        micros = (at - _EPOCH) // _MICROSECOND
        text = f"{kind}\x1f{subject}\x1f{leaf_hash}\x1f{micros}\x1f{case_id or ''}"
        item = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
        self.sums[kind] = (self.sums[kind] + item) % _MOD
        self.counts[kind] += 1

    def add_leaf(self, item: Leaf) -> None:
        self.add(item.kind.value, item.subject, item.hash, item.at, item.case_id)

    def differing(self, other: Digests) -> set[str]:
        kinds = set(self.counts) | set(other.counts)
        return {
            k for k in kinds if (self.sums[k], self.counts[k]) != (other.sums[k], other.counts[k])
        }


def precise_events(store: SqlStore, matcher: LeafMatcher) -> None:
    """Every stored event against its leaf, one by one (the slow path, run only when the
    events' digests differ): the leaf is recomputed from the stored hash and time."""
    e = t.events
    after: tuple[str, int] = ("", 0)
    while True:
        with store._read() as conn:
            rows = conn.execute(
                sa.select(e.c.case_id, e.c.version, e.c.payload, e.c.hash)
                .where(sa.tuple_(e.c.case_id, e.c.version) > sa.tuple_(*after))
                .order_by(e.c.case_id, e.c.version)
                .limit(BATCH)
            ).all()
        for row in rows:
            try:
                at = dt.datetime.fromisoformat(json.loads(row.payload)["at"])
                matcher.expect(event_leaf(row.case_id, row.version, at, row.hash))
            except (ValueError, TypeError, KeyError, RecursionError, MoveCarError):
                continue  # unreadable: the case's own check reports it
        matcher.flush()
        if len(rows) < BATCH:
            return
        after = (rows[-1].case_id, rows[-1].version)


class LeafMatcher:
    """Compares expected leaves (recomputed from rows) with the stored ones, in batches.

    With ``digests`` it only adds the expected leaves to them (the fast path); without,
    it looks each one up (see :class:`Digests`).
    """

    def __init__(self, store: SqlStore, digests: Digests | None = None) -> None:
        self.store = store
        self.digests = digests
        self.pending: dict[tuple[str, str], Leaf] = {}
        self.found: Counter[str] = Counter()
        self.problems: list[Problem] = []

    def expect(self, item: Leaf) -> None:
        if self.digests is not None:
            self.digests.add_leaf(item)
            return
        self.pending[(item.kind.value, item.subject)] = item
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lv = t.ledger_leaves
        todo, self.pending = self.pending, {}
        by_kind: dict[str, list[str]] = {}
        for kind, subject in todo:
            by_kind.setdefault(kind, []).append(subject)
        stored: dict[tuple[str, str], Any] = {}
        with self.store._read() as conn:
            for kind, subjects in by_kind.items():
                for row in conn.execute(
                    sa.select(
                        lv.c.kind, lv.c.subject, lv.c.leaf_hash, lv.c.record_at, lv.c.case_id
                    ).where(lv.c.kind == kind, lv.c.subject.in_(subjects))
                ):
                    stored[(row.kind, row.subject)] = row
        for key, want in todo.items():
            have = stored.get(key)
            label = _label(want)
            if have is None:
                self.problems.append((want.kind.value, label, "has no ledger leaf"))
                continue
            self.found[want.kind.value] += 1
            if have.leaf_hash != want.hash:
                self.problems.append((want.kind.value, label, "differs from its ledger leaf"))
            elif have.record_at != want.at:
                self.problems.append((want.kind.value, label, "its leaf's date was changed"))
            elif have.case_id != want.case_id:
                self.problems.append((want.kind.value, label, "its leaf names another case"))


def _label(item: Leaf) -> str:
    return item.subject


# --- records other than events ----------------------------------------------------------


def _pages(store: SqlStore, table: sa.Table, key: sa.Column[Any]) -> Iterator[Any]:
    """Every row of ``table`` by ``key``, a page per read (never the whole table at once)."""
    last: Any = None
    while True:
        query = sa.select(table).order_by(key).limit(BATCH)
        if last is not None:
            query = query.where(key > last)
        with store._read() as conn:
            rows = conn.execute(query).all()
        yield from rows
        if len(rows) < BATCH:
            return
        last = getattr(rows[-1], key.name)


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


#: How each kind of record (events aside) becomes its leaf, from its row.
RECORDS: tuple[tuple[LeafKind, sa.Table, str, Callable[[Any], Leaf]], ...] = (
    (
        LeafKind.OWNER_LOOKUP,
        t.owner_lookups,
        "id",
        lambda r: owner_lookup_leaf(
            r.case_id,
            r.version,
            r.at,
            agent_id=r.agent_id,
            plate=r.plate,
            found=bool(r.found),
            source=r.source,
        ),
    ),
    (
        LeafKind.ACCESS,
        t.access_log,
        "id",
        lambda r: access_leaf(
            r.id, r.at, actor=r.actor, action=r.action, case_id=r.case_id, detail=r.detail
        ),
    ),
    (
        LeafKind.LEGAL_HOLD,
        t.legal_holds,
        "id",
        lambda r: legal_hold_leaf(r.id, r.at, case_id=r.case_id, actor=r.actor, reason=r.reason),
    ),
    (
        LeafKind.RECORDING,
        t.recordings,
        "id",
        lambda r: recording_leaf(
            r.case_id,
            r.call_id,
            r.recorded_at,
            location=r.location,
            checksum_sha256=r.checksum_sha256,
            duration_ms=r.duration_ms,
        ),
    ),
    (
        LeafKind.REPORT,
        t.monthly_reports,
        "month",
        lambda r: report_leaf(r.month, r.created_at, r.hash),
    ),
    (
        LeafKind.SETTLEMENT,
        t.settlements,
        "month",
        lambda r: settlement_leaf(
            r.month,
            r.created_at,
            billable_calls=r.billable_calls,
            unit_price=_money(r.unit_price),
            fee=_money(r.fee),
            report_digest=r.report_digest,
        ),
    ),
    (
        LeafKind.PURGE,
        t.purge_log,
        "case_id",
        lambda r: purge_leaf(
            r.case_id,
            r.purged_at,
            closed_at=r.closed_at,
            anchor_version=r.anchor_version,
            anchor_hash=r.anchor_hash,
            events_removed=r.events_removed,
        ),
    ),
)


def check_records(
    store: SqlStore, matcher: LeafMatcher, kinds: frozenset[str] | None = None
) -> None:
    """Every non-event record (of ``kinds``, default all) against its leaf (a row that
    cannot be read is a problem)."""
    for kind, table, key, to_leaf in RECORDS:
        if kinds is not None and kind.value not in kinds:
            continue
        for row in _pages(store, table, table.c[key]):
            try:
                matcher.expect(to_leaf(row))
            except (MoveCarError, ValueError, TypeError, ArithmeticError) as exc:
                subject = str(getattr(row, key, "?"))[:80]
                matcher.problems.append((kind.value, subject, f"unreadable ({type(exc).__name__})"))
    matcher.flush()


def check_orphans(
    store: SqlStore, matcher: LeafMatcher, kinds: frozenset[str] | None = None
) -> list[Problem]:
    """Leaves whose record is gone, except those of lawfully purged cases.

    Counted first (cheap); only when the counts do not add up are the leaves of that
    kind walked to name the missing records.
    """
    lv, p = t.ledger_leaves, t.purge_log
    with store._read() as conn:
        totals: dict[str, int] = {
            kind: n
            for kind, n in conn.execute(sa.select(lv.c.kind, sa.func.count()).group_by(lv.c.kind))
        }
        purged: dict[str, int] = {
            kind: n
            for kind, n in conn.execute(
                sa.select(lv.c.kind, sa.func.count())
                .join(p, p.c.case_id == lv.c.case_id)
                .where(
                    lv.c.kind.in_([k.value for k in PURGEABLE]),
                    # the subject names the case too ("<case id>/..."): a leaf whose
                    # case_id was pointed at a purged case does not pass for purged
                    sa.func.substr(lv.c.subject, 1, sa.func.length(lv.c.case_id) + 1)
                    == lv.c.case_id + "/",
                )
                .group_by(lv.c.kind)
            )
        }
    out: list[Problem] = []
    for kind, total in totals.items():
        if kinds is not None and kind not in kinds:
            continue
        if kind not in LeafKind.__members__.values():
            out.append(("ledger", kind[:20], f"{total} leaves of an unknown kind"))
            continue
        if total != matcher.found[kind] + purged.get(kind, 0):
            out.extend(_name_orphans(store, LeafKind(kind)))
    return out


def _name_orphans(store: SqlStore, kind: LeafKind) -> list[Problem]:
    """The leaves of ``kind`` without their record (and not of a lawfully purged case)."""
    lv = t.ledger_leaves
    out: list[Problem] = []
    table, key, _ = {k: (tb, ky, f) for k, tb, ky, f in RECORDS}.get(kind, (t.events, "", None))
    for row in _pages_where(store, lv, lv.c.id, lv.c.kind == kind.value):
        if _record_exists(store, kind, row.subject, table, key):
            continue
        lawful = row.case_id is not None and row.subject.startswith(row.case_id + "/")
        if lawful and _purged(store, row.case_id):
            continue
        out.append((kind.value, row.subject[:140], "record deleted (its leaf remains)"))
    # Nothing named: every leaf has its record, and the counts differ only by records the
    # audit could not read, each of which is a finding of its own already.
    return out


def _pages_where(
    store: SqlStore, table: sa.Table, key: sa.Column[Any], where: Any
) -> Iterator[Any]:
    last: Any = None
    while True:
        query = sa.select(table).where(where).order_by(key).limit(BATCH)
        if last is not None:
            query = query.where(key > last)
        with store._read() as conn:
            rows = conn.execute(query).all()
        yield from rows
        if len(rows) < BATCH:
            return
        last = getattr(rows[-1], key.name)


def _record_exists(
    store: SqlStore, kind: LeafKind, subject: str, table: sa.Table, key: str
) -> bool:
    if kind in (LeafKind.EVENT, LeafKind.OWNER_LOOKUP, LeafKind.RECORDING):
        case_id, _, rest = subject.rpartition("/")
        if kind is LeafKind.RECORDING:
            where = sa.and_(table.c.case_id == case_id, table.c.call_id == rest)
        else:
            if not rest.isdigit():
                return False
            where = sa.and_(table.c.case_id == case_id, table.c.version == int(rest))
    elif key == "id":
        if not subject.isdigit():
            return False
        where = table.c.id == int(subject)
    else:
        where = table.c[key] == subject
    with store._read() as conn:
        return (
            conn.execute(sa.select(sa.literal(1)).select_from(table).where(where)).first()
            is not None
        )


def _purged(store: SqlStore, case_id: str | None) -> bool:
    if case_id is None:
        return False
    with store._read() as conn:
        return (
            conn.execute(
                sa.select(t.purge_log.c.case_id).where(t.purge_log.c.case_id == case_id)
            ).first()
            is not None
        )


# --- the tree and its checkpoints -------------------------------------------------------


@attrs.frozen
class Anchor:
    """A tree head the ledger must reproduce: where it comes from, and its checkpoint."""

    label: str
    size: int
    root: str
    issued_at: dt.datetime | None  # None: a report's tree head (not a checkpoint)


def stored_checkpoints(
    store: SqlStore, key: PublicKey | None
) -> tuple[list[Anchor], list[Problem]]:
    """The checkpoints kept in the database, checked for form, order and (with the key)
    signature."""
    c = t.checkpoints
    anchors: list[Anchor] = []
    out: list[Problem] = []
    with store._read() as conn:
        rows = conn.execute(sa.select(c).order_by(c.c.id)).all()
    previous: Checkpoint | None = None
    for row in rows:
        label = f"stored #{row.id}"
        try:
            cp = Checkpoint.of(row.size, row.root, row.issued_at, row.key_id, row.signature)
        except MoveCarError as exc:
            out.append(("checkpoint", label, f"malformed: {exc}"))
            continue
        if key is not None and not key.verifies(cp):
            out.append(("checkpoint", label, "signature does not verify under the public key"))
        if previous is not None and (cp.size < previous.size or cp.issued_at < previous.issued_at):
            out.append(("checkpoint", label, "goes back in size or time"))
        previous = cp
        anchors.append(Anchor(label, cp.size, cp.root, cp.issued_at))
    return anchors, out


def given_checkpoints(
    checkpoints: Sequence[tuple[str, Checkpoint]], key: PublicKey | None
) -> tuple[list[Anchor], list[Problem]]:
    """Checkpoints Party A holds (``(label, checkpoint)``): each must verify under the key."""
    anchors: list[Anchor] = []
    out: list[Problem] = []
    for label, cp in checkpoints:
        if key is None or not key.verifies(cp):
            why = (
                "signed by another key"
                if key is not None and cp.key_id != key.key_id
                else "signature does not verify under the public key"
            )
            out.append(("checkpoint", label, why))
            continue
        anchors.append(Anchor(label, cp.size, cp.root, cp.issued_at))
    return anchors, out


def check_tree(store: SqlStore, anchors: Sequence[Anchor], digests: Digests) -> list[Problem]:
    """Walk the sequenced leaves in index order: indices dense, every anchor reproduced,
    sequencing times never backwards, nothing dated before a checkpoint it is not in;
    then the pending leaves against the newest checkpoint, and the sequencer's state.
    Every leaf but those of lawfully purged cases goes into ``digests``."""
    lv = t.ledger_leaves
    lawful = _lawfully_purged(store)
    out: list[Problem] = []
    by_size: dict[int, list[Anchor]] = {}
    for a in anchors:
        by_size.setdefault(a.size, []).append(a)
    # checkpoints by size, for "the newest checkpoint a leaf at index i is not part of"
    cps = sorted((a.size, a.issued_at) for a in anchors if a.issued_at is not None)
    sizes = [s for s, _ in cps]
    latest_at: list[dt.datetime] = []
    for _, at in cps:
        latest_at.append(at if not latest_at or at > latest_at[-1] else latest_at[-1])

    def newest_excluding(index: int) -> dt.datetime | None:
        # checkpoints of size <= index do not contain leaf number ``index``
        k = bisect.bisect_right(sizes, index)
        return latest_at[k - 1] if k else None

    tree = CompactTree()
    for a in by_size.get(0, []):
        _compare(tree, a, out)
    last_seq: dt.datetime | None = None
    broken = False
    last = -1
    while True:
        with store._read() as conn:
            rows = conn.execute(
                sa.select(
                    lv.c.leaf_index,
                    lv.c.leaf_hash,
                    lv.c.kind,
                    lv.c.subject,
                    lv.c.record_at,
                    lv.c.sequenced_at,
                    lv.c.case_id,
                )
                .where(lv.c.leaf_index > last)
                .order_by(lv.c.leaf_index)
                .limit(20_000)
            ).all()
        for row in rows:
            if not lawful(row):
                digests.add(row.kind, row.subject, row.leaf_hash, row.record_at, row.case_id)
            index = int(row.leaf_index)
            if index != tree.size and not broken:
                out.append(("ledger", f"leaf {tree.size}", "missing: the indices have a gap"))
                broken = True
            if not broken:
                tree.append(row.leaf_hash)
                for a in by_size.get(tree.size, []):
                    _compare(tree, a, out)
            if row.sequenced_at is not None:
                if last_seq is not None and row.sequenced_at < last_seq:
                    out.append(("ledger", f"leaf {index}", "sequenced before the leaf before it"))
                last_seq = row.sequenced_at
            cutoff = newest_excluding(index)
            if cutoff is not None and row.record_at < cutoff:
                out.append(_backdated(row, cutoff))
        if len(rows) < 20_000:
            break
        last = int(rows[-1].leaf_index)
    for size, group in by_size.items():
        if size > tree.size:
            for a in group:
                out.append(
                    (
                        "checkpoint",
                        a.label,
                        f"covers {size} leaves, the ledger holds {tree.size}: leaves were deleted",
                    )
                )
    newest = latest_at[-1] if latest_at else None
    for row in _pages_where(store, lv, lv.c.id, lv.c.leaf_index.is_(None)):
        if not lawful(row):
            digests.add(row.kind, row.subject, row.leaf_hash, row.record_at, row.case_id)
        if newest is not None and row.record_at < newest:
            out.append(_backdated(row, newest))
    out.extend(_check_state(store, tree, broken))
    return out


def _lawfully_purged(store: SqlStore) -> Callable[[Any], bool]:
    """Whether a leaf row belongs to a record a retention purge removed with its case (二(四)):
    a purgeable kind, of a case in the purge log, whose subject names that case."""
    with store._read() as conn:
        any_purge = conn.execute(sa.select(t.purge_log.c.case_id).limit(1)).first()
    if any_purge is None:
        return lambda row: False
    purgeable = {k.value for k in PURGEABLE}
    known: dict[str, bool] = {}  # a purged case has several leaves: ask once per case

    def lawful(row: Any) -> bool:
        case_id = row.case_id
        if row.kind not in purgeable or not case_id or not row.subject.startswith(case_id + "/"):
            return False
        if case_id not in known:
            known[case_id] = _purged(store, case_id)
        return known[case_id]

    return lawful


def _backdated(row: Any, cutoff: dt.datetime) -> Problem:
    return (
        row.kind,
        row.subject[:140],
        f"dated {utc_text(row.record_at)[:19]}Z, before the checkpoint of "
        f"{utc_text(cutoff)[:19]}Z it is not part of (backdated)",
    )


def _compare(tree: CompactTree, anchor: Anchor, out: list[Problem]) -> None:
    if tree.root() != anchor.root:
        what = "checkpoint" if anchor.issued_at is not None else "report"
        out.append(
            (what, anchor.label, f"the ledger no longer reproduces its root (size {anchor.size})")
        )


def _check_state(store: SqlStore, tree: CompactTree, broken: bool) -> list[Problem]:
    s = t.ledger_state
    with store._read() as conn:
        row = conn.execute(sa.select(s).where(s.c.id == 1)).one_or_none()
        newest = conn.execute(
            sa.select(t.checkpoints.c.size, t.checkpoints.c.issued_at)
            .order_by(t.checkpoints.c.id.desc())
            .limit(1)
        ).one_or_none()
    if row is None:
        return [("ledger", "state", "the sequencer's state row is missing")]
    out: list[Problem] = []
    try:
        kept = CompactTree.from_json(row.tree)
    except MoveCarError:
        return [("ledger", "state", "the sequencer's compact tree is not readable")]
    if not broken and kept != tree:
        out.append(("ledger", "state", "the sequencer's tree is not the tree of the leaves"))
    want = (None, None) if newest is None else (newest.size, newest.issued_at)
    if (row.checkpoint_size, row.checkpoint_at) != want:
        out.append(("ledger", "state", "the newest checkpoint was deleted or replaced"))
    return out


def check_holds(store: SqlStore) -> list[Problem]:
    """Each state row's legal-hold flag and reason against its case's latest hold record."""
    h, c = t.legal_holds, t.cases
    with store._read() as conn:
        latest = conn.execute(
            sa.select(h.c.case_id, h.c.reason).where(
                h.c.id.in_(sa.select(sa.func.max(h.c.id)).group_by(h.c.case_id))
            )
        ).all()
        flagged = conn.execute(
            sa.select(c.c.case_id, c.c.legal_hold, c.c.legal_hold_reason).where(
                sa.or_(
                    c.c.legal_hold == sa.true(),
                    c.c.legal_hold_reason.is_not(None),
                    c.c.case_id.in_(sa.select(h.c.case_id)),
                )
            )
        ).all()
    records = {r.case_id: r.reason for r in latest}
    out: list[Problem] = []
    for row in flagged:
        reason = records.get(row.case_id)
        want = (reason is not None, reason)
        if (bool(row.legal_hold), row.legal_hold_reason) != want:
            out.append(("case", row.case_id, "legal-hold flag is not its latest hold record"))
    return out
