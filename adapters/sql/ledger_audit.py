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

Rows and leaves are compared without a look-up per row: the leaves the rows call for
(events where the case's chain is verified in :mod:`.audit`, the other kinds here, table
by table) and the leaves stored are each summed into an order-free digest per kind
(:class:`Digests`), in one sequential pass each; only a kind whose digests differ is
compared leaf by leaf (:func:`compare_kind`), to name what differs.
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
    case_subject,
    event_leaf,
    incident_leaf,
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
_sha256 = hashlib.sha256
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class Digests:
    """An order-free digest per kind of a set of leaves: the sum, modulo 2^256, of the
    SHA-256 of each leaf's columns (kind, subject, hash, date, case).

    The audit computes one from the rows (what the leaves must be) and one from the
    ledger table (what they are), each in one sequential pass; equal digests mean equal
    sets, so the one-by-one comparison (:func:`compare_kind`) runs only for a kind whose
    digests differ, to name what differs.
    """

    def __init__(self) -> None:
        # unreduced sums (a million 256-bit items stay under 300 bits): reduced on compare
        self.sums: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def add(
        self, kind: str, subject: str, leaf_hash: str, at: dt.datetime, case_id: str | None
    ) -> None:
        # the instant as whole microseconds since 1970: one spelling for every zone
        micros = (at - _EPOCH) // _MICROSECOND
        text = f"{kind}\x1f{subject}\x1f{leaf_hash}\x1f{micros}\x1f{case_id or ''}"
        self.sums[kind] += int.from_bytes(_sha256(text.encode()).digest(), "big")
        self.counts[kind] += 1

    def add_leaf(self, item: Leaf) -> None:
        self.add(item.kind.value, item.subject, item.hash, item.at, item.case_id)

    def add_all(self, other: Digests) -> None:
        """Sum ``other``'s leaves in (the digest of the union of two disjoint sets)."""
        self.sums.update(other.sums)
        self.counts.update(other.counts)

    def differing(self, other: Digests) -> set[str]:
        kinds = set(self.counts) | set(other.counts)
        mine = {k: (self.sums[k] % _MOD, self.counts[k]) for k in kinds}
        return {k for k in kinds if mine[k] != (other.sums[k] % _MOD, other.counts[k])}


def append_leaves(
    case_id: str, events: Sequence[tuple[int, Any, dt.datetime | None, str]]
) -> list[Leaf | str]:
    """The leaves a case's stored events call for, one per append: ``events`` are
    ``(version, batch, time, hash)`` in version order (the batch column names the
    append's first version; a missing one counts the event as an append of its own). An
    append whose first event's time cannot be read gives its leaf's subject alone."""
    groups: dict[int, list[tuple[int, dt.datetime | None, str]]] = {}
    for version, batch, at, h in events:
        first = batch if type(batch) is int else version
        groups.setdefault(first, []).append((version, at, h))
    out: list[Leaf | str] = []
    for first, items in groups.items():
        last, _, last_hash = items[-1]
        at = items[0][1]
        if at is None or not isinstance(last_hash, str):
            out.append(case_subject(case_id, last))
        else:
            out.append(event_leaf(case_id, first, last, at, last_hash))
    return out


def event_leaves(store: SqlStore) -> Iterator[Leaf | str]:
    """The leaf every stored event must have, recomputed from its stored hash and time;
    the subject alone for an event that cannot be read (the case check reports it)."""
    e, c = t.events, t.cases
    last = ""
    while True:
        with store._read() as conn:
            ids = list(
                conn.execute(
                    sa.select(c.c.case_id)
                    .where(c.c.case_id > last)
                    .order_by(c.c.case_id)
                    .limit(200)
                ).scalars()
            )
            rows = conn.execute(
                sa.select(e.c.case_id, e.c.version, e.c.batch, e.c.payload, e.c.hash)
                .where(e.c.case_id.in_(ids))
                .order_by(e.c.case_id, e.c.version)
            ).all()
        by_case: dict[str, list[tuple[int, Any, dt.datetime | None, str]]] = {}
        for row in rows:
            by_case.setdefault(row.case_id, []).append(
                (row.version, row.batch, _event_time(row.payload), row.hash)
            )
        for case_id, events in by_case.items():
            yield from append_leaves(case_id, events)
        if len(ids) < 200:
            return
        last = ids[-1]


def _event_time(payload: str) -> dt.datetime | None:
    try:
        at = dt.datetime.fromisoformat(json.loads(payload)["at"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return at if at.utcoffset() is not None else None


# --- records other than events ----------------------------------------------------------


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
        LeafKind.INCIDENT,
        t.incident_records,
        "seq",
        lambda r: incident_leaf(
            int(r.seq),
            r.recorded_at,
            incident_id=r.incident_id,
            type_name=r.type_name,
            payload=r.payload,
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


def record_leaves(
    store: SqlStore, kind: LeafKind, problems: list[Problem] | None = None
) -> Iterator[Leaf | str]:
    """The leaf each non-event record of ``kind`` must have, from its row; the row's
    subject alone for one that cannot be made into a leaf (a problem, when ``problems``
    is given)."""
    for each_kind, table, key, to_leaf in RECORDS:
        if each_kind is not kind:
            continue
        for row in _pages_where(store, table, table.c[key], _WITH_LEAF.get(kind, sa.true())):
            try:
                yield to_leaf(row)
            except (MoveCarError, ValueError, TypeError, ArithmeticError) as exc:
                subject = SUBJECTS[kind](row)
                if problems is not None:
                    problems.append((kind.value, subject, f"unreadable ({type(exc).__name__})"))
                yield subject


#: Rows of a kind that have a leaf of their own: look-ups stored before schema 0004 (later
#: ones are covered by their event's leaf, and checked against the event by the audit).
_WITH_LEAF: dict[LeafKind, Any] = {LeafKind.OWNER_LOOKUP: t.owner_lookups.c.has_leaf == sa.true()}

#: The subject of a record's leaf, from its row (as its leaf function makes it).
SUBJECTS: dict[LeafKind, Callable[[Any], str]] = {
    LeafKind.OWNER_LOOKUP: lambda r: case_subject(r.case_id, r.version),
    LeafKind.ACCESS: lambda r: str(r.id),
    LeafKind.LEGAL_HOLD: lambda r: str(r.id),
    LeafKind.RECORDING: lambda r: case_subject(r.case_id, r.call_id),
    LeafKind.REPORT: lambda r: str(r.month),
    LeafKind.SETTLEMENT: lambda r: str(r.month),
    LeafKind.PURGE: lambda r: str(r.case_id),
    LeafKind.INCIDENT: lambda r: str(r.seq),
}


def check_records(store: SqlStore, digests: Digests) -> list[Problem]:
    """Every non-event record's leaf into ``digests``; the rows that cannot be read."""
    problems: list[Problem] = []
    for kind, _, _, _ in RECORDS:
        for item in record_leaves(store, kind, problems):
            if not isinstance(item, str):
                digests.add_leaf(item)
    return problems


def compare_kind(store: SqlStore, kind: LeafKind) -> list[Problem]:
    """The slow path for one kind whose digests differ: the stored leaves of ``kind`` by
    subject, against the leaves recomputed from the records, one by one; what is left on
    either side is named (a leaf whose case was lawfully purged is not)."""
    lv = t.ledger_leaves
    stored: dict[str, Any] = {}
    out: list[Problem] = []
    for row in _pages_where(store, lv, lv.c.id, lv.c.kind == kind.value):
        if row.subject in stored:
            out.append((kind.value, row.subject[:140], "has two ledger leaves"))
        stored[row.subject] = row
    wanted = event_leaves(store) if kind is LeafKind.EVENT else record_leaves(store, kind)
    for want in wanted:
        if isinstance(want, str):  # a record that cannot be read: reported by its check
            stored.pop(want, None)
            continue
        have = stored.pop(want.subject, None)
        label = want.subject[:140]
        if have is None:
            out.append((kind.value, label, "has no ledger leaf"))
        elif have.leaf_hash != want.hash:
            out.append((kind.value, label, "differs from its ledger leaf"))
        elif have.record_at != want.at:
            out.append((kind.value, label, "its leaf's date was changed"))
        elif have.case_id != want.case_id:
            out.append((kind.value, label, "its leaf names another case"))
    lawful = _lawfully_purged(store)
    for subject, row in stored.items():
        if lawful is None or not lawful(row):
            out.append((kind.value, subject[:140], "record deleted (its leaf remains)"))
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
    """Walk the leaves once, in the order they were written: the sequenced ones have
    dense indices, reproduce every anchor, were sequenced in time order and are not
    dated before a checkpoint they are not in; the pending ones are not dated before the
    newest checkpoint; the sequencer's state is the tree of the sequenced ones. Every
    leaf but those of lawfully purged cases goes into ``digests``."""
    lv = t.ledger_leaves
    lawful = _lawfully_purged(store)
    out: list[Problem] = []
    by_size: dict[int, list[Anchor]] = {}
    for a in anchors:
        by_size.setdefault(a.size, []).append(a)
    newest_excluding = _newest_excluding(anchors)

    tree = CompactTree()
    for a in by_size.get(0, []):
        _compare(tree, a, out)
    mark = _sequenced_mark(store)
    newest = newest_excluding(2**63)
    last_seq: dt.datetime | None = None
    broken = False
    last = 0
    while True:
        # In id order, the order the sequencer gives indices in (no index on leaf_index
        # to keep up on every write); ids up to the mark are sequenced, the rest pending.
        with store._read() as conn:
            rows = conn.execute(
                sa.select(
                    lv.c.id,
                    lv.c.leaf_index,
                    lv.c.leaf_hash,
                    lv.c.kind,
                    lv.c.subject,
                    lv.c.record_at,
                    lv.c.sequenced_at,
                    lv.c.case_id,
                )
                .where(lv.c.id > last)
                .order_by(lv.c.id)
                .limit(20_000)
            ).all()
        add = digests.add
        for row in rows:
            if lawful is None or not lawful(row):
                add(row.kind, row.subject, row.leaf_hash, row.record_at, row.case_id)
            if row.id > mark:  # pending
                if row.leaf_index is not None:
                    out.append(("ledger", f"leaf #{row.id}", "indexed past the sequencer's mark"))
                if newest is not None and row.record_at < newest:
                    out.append(_backdated(row, newest))
                continue
            if row.leaf_index != tree.size and not broken:
                out.append(("ledger", f"leaf {tree.size}", "missing: the indices have a gap"))
                broken = True
            if not broken:
                tree.append(row.leaf_hash)
                for a in by_size.get(tree.size, []):
                    _compare(tree, a, out)
            if row.sequenced_at is not None:
                if last_seq is not None and row.sequenced_at < last_seq:
                    what = f"leaf {row.leaf_index}"
                    out.append(("ledger", what, "sequenced before the leaf before it"))
                last_seq = row.sequenced_at
            cutoff = newest_excluding(tree.size - 1)
            if cutoff is not None and row.record_at < cutoff:
                out.append(_backdated(row, cutoff))
        if len(rows) < 20_000:
            break
        last = int(rows[-1].id)
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
    out.extend(_check_state(store, tree, broken))
    return out


def _newest_excluding(anchors: Sequence[Anchor]) -> Callable[[int], dt.datetime | None]:
    """For a leaf index, the time of the newest checkpoint that does not contain it (its
    size is at most the index), or None."""
    cps = sorted((a.size, a.issued_at) for a in anchors if a.issued_at is not None)
    sizes = [size for size, _ in cps]
    latest_at: list[dt.datetime] = []
    for _, at in cps:
        latest_at.append(at if not latest_at or at > latest_at[-1] else latest_at[-1])

    def newest_excluding(index: int) -> dt.datetime | None:
        k = bisect.bisect_right(sizes, index)
        return latest_at[k - 1] if k else None

    return newest_excluding


def _sequenced_mark(store: SqlStore) -> int:
    with store._read() as conn:
        mark = conn.execute(
            sa.select(t.ledger_state.c.sequenced_id).where(t.ledger_state.c.id == 1)
        ).scalar()
    return int(mark or 0)


def _lawfully_purged(store: SqlStore) -> Callable[[Any], bool] | None:
    """Whether a leaf row belongs to a record a retention purge removed with its case
    (二(四)): a purgeable kind, of a case in the purge log, whose subject names that case."""
    with store._read() as conn:
        any_purge = conn.execute(sa.select(t.purge_log.c.case_id).limit(1)).first()
    if any_purge is None:
        return None  # nothing was purged: no leaf is a purged record's
    purgeable = {k.value for k in PURGEABLE}
    known: dict[str, bool] = {}  # a purged case has several leaves: ask once per case
    kept: dict[str, set[str]] = {}

    def lawful(row: Any) -> bool:
        case_id = row.case_id
        if row.kind not in purgeable or not case_id or not row.subject.startswith(case_id + "/"):
            return False
        if case_id not in known:
            known[case_id] = _purged(store, case_id)
        if not known[case_id]:
            return False
        if row.kind == LeafKind.RECORDING.value:
            # 二(四): a purge keeps a recording's row (its hash) and removes only the audio;
            # a kept row is checked against its leaf like any other. Purges before that
            # deleted the rows: a recording leaf without its row stays lawful.
            if case_id not in kept:
                kept[case_id] = _recording_subjects(store, case_id)
            return row.subject not in kept[case_id]
        return True

    return lawful


def _recording_subjects(store: SqlStore, case_id: str) -> set[str]:
    r = t.recordings
    with store._read() as conn:
        ids = conn.execute(sa.select(r.c.call_id).where(r.c.case_id == case_id)).scalars()
        return {case_subject(case_id, call_id) for call_id in ids}


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
