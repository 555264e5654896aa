"""The audit's checks of each case, over one range of state rows at a time.

:func:`~movecar_adapters.sql.audit.verify` splits the cases into ranges of ``seq`` (the
state rows' insertion order) and checks each range here, in its own process or in helper
processes beside it (:mod:`movecar_adapters.sql.audit_pool`): a range's result
(:class:`CaseAudit`) holds its findings, counts, the ledger leaves its events call for and
how many values opened under each key, all of which add up across ranges in any order.

What is checked per case is described in :mod:`movecar_adapters.sql.audit`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import sqlalchemy as sa

from movecar_adapters.crypto import DecryptionFailed, KeyRing, place
from movecar_adapters.sql import schema as t
from movecar_adapters.sql.events import PII_FIELDS, RECORD_FIELD, RECORD_TYPE
from movecar_adapters.sql.ledger_audit import Digests, append_leaves
from movecar_core.case import CaseRecord, Event, OwnerLookedUp
from movecar_core.codec import MalformedRecord, decode, decode_record
from movecar_core.errors import MoveCarError
from movecar_core.integrity import GENESIS, StoredLink, chain_of_json, verify_chain
from movecar_core.ledger import Leaf
from movecar_core.machine import fold
from movecar_core.retention import PURGE_CLOCK_SKEW, retention_due


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
class CaseRules:
    """What judging a purged case needs beside its rows: the audit's clock, read once when
    it starts (so every process judges by the same instant), and the contract's retention
    period (二(四) "必须保存 3 年")."""

    now: dt.datetime
    retention_years: int


@attrs.define
class CaseAudit:
    """The case checks' result over some ranges; :meth:`add` sums another range's in."""

    findings: list[Finding] = attrs.Factory(list)
    cases: int = 0
    events: int = 0
    #: The ledger leaves the checked events call for (one per append).
    leaves: Digests = attrs.Factory(Digests)
    #: Per key id, the stored values that opened and those that did not.
    opened: Counter[str] = attrs.Factory(Counter)
    refused: Counter[str] = attrs.Factory(Counter)

    def add(self, other: CaseAudit) -> None:
        self.findings.extend(other.findings)
        self.cases += other.cases
        self.events += other.events
        self.leaves.add_all(other.leaves)
        self.opened.update(other.opened)
        self.refused.update(other.refused)

    def unverifiable(self, configured: tuple[str, ...]) -> dict[str, str]:
        """Key ids none of whose values opened, with why."""
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


def case_ranges(read: Callable[[], sa.Connection], page: int) -> Iterator[tuple[int, int]]:
    """``(after, upto)`` ranges of ``seq`` holding ``page`` state rows each (the last one
    fewer), found as they are needed: one index look-up per range, however the values of
    ``seq`` are spread (an edited row with a huge ``seq`` makes no empty ranges)."""
    c = t.cases
    last: int | None = None
    while True:
        after = sa.true() if last is None else c.c.seq > last
        with read() as conn:
            upto = conn.execute(
                sa.select(c.c.seq).where(after).order_by(c.c.seq).offset(page - 1).limit(1)
            ).scalar()
            if upto is None:
                upto = conn.execute(sa.select(sa.func.max(c.c.seq)).where(after)).scalar()
        if upto is None:
            return
        yield (-1 if last is None else last, int(upto))
        last = int(upto)


def audit_range(
    read: Callable[[], sa.Connection], keys: KeyRing, rules: CaseRules, after: int, upto: int
) -> CaseAudit:
    """Check every case whose state row's ``seq`` is in ``(after, upto]``."""
    out = CaseAudit()
    opener = _Keys(keys, out.opened, out.refused)
    rows, stored, purges, lookups, broken = _page(read, after, upto)
    out.findings.extend(broken)
    for row in rows:
        out.cases += 1
        evs = stored.get(row.case_id, [])
        out.events += len(evs)
        leaves: list[Leaf] = []
        try:
            out.findings.extend(
                _check_case(
                    rules,
                    opener,
                    row,
                    evs,
                    purge=purges.get(row.case_id),
                    lookups=lookups.get(row.case_id, []),
                    leaves=leaves,
                )
            )
        except Exception as exc:  # one bad row is one finding; the audit goes on
            out.findings.append(
                Finding("case", str(row.case_id), f"row unreadable ({type(exc).__name__})")
            )
        for item in leaves:
            out.leaves.add_leaf(item)
    return out


Page = tuple[list[Any], dict[str, list[Any]], dict[str, Any], dict[str, list[Any]], list[Finding]]


def _page(read: Callable[[], sa.Connection], after: int, upto: int) -> Page:
    """The state rows of a range with their events, purge-log and look-up-log rows, and
    findings for rows that cannot be read (each read again alone, so one bad row spoils
    only itself)."""
    c, e, p, lk = t.cases, t.events, t.purge_log, t.owner_lookups
    with read() as conn:
        keys = conn.execute(
            sa.select(c.c.seq, c.c.case_id)
            .where(c.c.seq > after, c.c.seq <= upto)
            .order_by(c.c.seq)
        ).all()
        broken: list[Finding] = []
        if not keys:
            return [], {}, {}, {}, broken
        rows = _each_or_all(
            conn,
            sa.select(c).where(c.c.seq.in_([k.seq for k in keys])).order_by(c.c.seq),
            lambda: [(str(k.case_id), sa.select(c).where(c.c.seq == k.seq)) for k in keys],
            broken,
            "state row unreadable",
        )
        ids = [r.case_id for r in rows]
        stored: dict[str, list[Any]] = defaultdict(list)
        for ev in _each_or_all(
            conn,
            sa.select(e).where(e.c.case_id.in_(ids)).order_by(e.c.case_id, e.c.version),
            lambda: [
                (cid, sa.select(e).where(e.c.case_id == cid).order_by(e.c.version)) for cid in ids
            ],
            broken,
            "events unreadable",
        ):
            stored[ev.case_id].append(ev)
        spoiled = {f.subject for f in broken}
        purges = {x.case_id: x for x in conn.execute(sa.select(p).where(p.c.case_id.in_(ids)))}
        lookups: dict[str, list[Any]] = defaultdict(list)
        for x in _each_or_all(
            conn,
            sa.select(lk).where(lk.c.case_id.in_(ids)).order_by(lk.c.case_id, lk.c.version),
            lambda: [(cid, sa.select(lk).where(lk.c.case_id == cid)) for cid in ids],
            broken,
            "look-up log unreadable",
        ):
            lookups[x.case_id].append(x)
        spoiled = {f.subject for f in broken}
    return [r for r in rows if r.case_id not in spoiled], stored, purges, lookups, broken


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


class _Keys:
    """Counts, per key id, the stored values that opened and those that did not.

    A value that does not open where it is stored was moved there, altered, or the key is
    wrong: AES-GCM cannot say which. So it is counted, and a key none of whose values open
    is a wrong key (cannot verify), while a refused value under a key that opens others is
    tampering (a finding on its case).
    """

    def __init__(self, keys: KeyRing, opened: Counter[str], refused: Counter[str]) -> None:
        self.keys = keys
        self.opened = opened
        self.refused = refused

    def decrypt(self, value: str, where: str) -> tuple[str, bool]:
        """The plaintext, and whether it was bound to ``where`` (False: a legacy token)."""
        keys = self.keys
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


class _KeyFailure(Exception):
    def __init__(self, key_id: str, why: str) -> None:
        super().__init__(why)
        self.key_id = key_id


def _check_case(
    rules: CaseRules,
    keys: _Keys,
    row: Any,
    evs: list[Any],
    *,
    purge: Any,
    lookups: list[Any],
    leaves: list[Leaf],
) -> list[Finding]:
    """The case's findings; ``leaves`` gets the ledger leaf each stored event must have
    (from its stored hash: a rewritten event whose hash was recomputed differs from it)."""
    cid = row.case_id

    def bad(why: str) -> list[Finding]:
        return [Finding("case", cid, why)]

    if type(row.version) is not int:  # SQLite keeps any text in an INTEGER column
        return bad(f"state row version {row.version!r:.40} is not a number")
    if row.purged_at is not None:
        return _check_purged(rules, row, evs, purge, lookups) + _kept_after_purge(row)
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
    return [
        *out,
        *(Finding("case", cid, why) for why in _lookups(evs, events, record.plate, lookups)),
        *_kept_record(keys, row, record),
    ]


def _lookups(evs: list[Any], events: list[Event], plate: str, rows: list[Any]) -> list[str]:
    """二(二)/四: the look-up log's rows against the look-up events they repeat (schema
    0004: the events' leaf covers them, the row is a projection, like the state row)."""
    want = {
        ev.version: (e.at, e.agent_id, plate, e.found, e.source)
        for ev, e in zip(evs, events, strict=True)
        if isinstance(e, OwnerLookedUp)
    }
    out = []
    seen = set()
    for r in rows:
        version = r.version
        seen.add(version)
        expected = want.get(version)
        if expected is None:
            out.append(f"look-up row v{version!r:.20} has no look-up event")
        elif (r.at, r.agent_id, r.plate, bool(r.found), r.source) != expected:
            out.append(f"look-up row v{version} differs from its event")
    out += [f"look-up v{v} missing from the look-up log" for v in sorted(set(want) - seen)]
    return out


def _kept_record(keys: _Keys, row: Any, record: CaseRecord) -> list[Finding]:
    """The record kept in the state row (migration 0005) decides the case's next command,
    so it must open where it was sealed and be the fold of the events."""
    if row.folded is None:  # not kept (before 0005, bulk imports): the store folds
        return []
    cid = row.case_id
    try:
        where = place(cid, row.version, RECORD_TYPE, RECORD_FIELD)
        text, bound = keys.decrypt(row.folded, where)
        if not bound:
            return [Finding("case", cid, "kept record is not bound to its place")]
        kept = decode_record(cid, text)
    except _KeyFailure as exc:
        return [Finding("case", cid, f"kept record unreadable: {exc}", exc.key_id)]
    except (DecryptionFailed, MalformedRecord) as exc:
        return [Finding("case", cid, f"kept record unreadable: {exc}")]
    if kept != record:
        return [Finding("case", cid, "kept record is not the fold of its events")]
    return []


def _kept_after_purge(row: Any) -> list[Finding]:
    if row.folded is None:
        return []
    return [Finding("case", row.case_id, "purged, yet its state row keeps its record")]


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
                try:
                    when = dt.datetime.fromisoformat(at if isinstance(at, str) else "")
                except ValueError:
                    pass
                else:
                    if when.utcoffset() is None:
                        when = None
            else:
                payloads.append("not an object")
        stamped.append((ev.version, ev.batch, when, ev.hash))
    leaves.extend(x for x in append_leaves(cid, stamped) if not isinstance(x, str))
    return payloads


def _check_purged(
    rules: CaseRules, row: Any, evs: list[Any], purge: Any, lookups: list[Any]
) -> list[Finding]:
    """A purged case: only its tombstone left, matching the purge log, and purged lawfully."""
    out: list[Finding] = []
    cid = row.case_id
    if evs:
        out.append(Finding("case", cid, f"{len(evs)} events remain after the purge"))
    if lookups:
        out.append(Finding("case", cid, f"{len(lookups)} look-up rows remain after the purge"))
    if purge is None:
        out.append(Finding("case", cid, "purged without a purge-log entry"))
    elif (purge.anchor_version, purge.anchor_hash) != (row.version, row.head_hash):
        out.append(Finding("case", cid, "tombstone does not match the purge log's anchor"))
    elif (purge.closed_at, purge.purged_at) != (row.closed_at, row.purged_at):
        out.append(
            Finding("case", cid, "tombstone's closed or purge time differs from the purge log's")
        )
    return out + _early_purge(rules, row)


def _early_purge(rules: CaseRules, row: Any) -> list[Finding]:
    """二(四) "所有移车服务数据及电话录音资料，必须保存 3 年": a tombstone whose times say
    it was purged less than 3 years after closing, or whose times cannot be true.

    The times are the tombstone's own, which an attacker may have edited, so each way to
    make an early purge look lawful is checked: a closing time moved back before the case
    opened, or a purge time moved into the future (a forged ``--now`` or clock, which the
    purge itself refuses beyond :data:`~movecar_core.retention.PURGE_CLOCK_SKEW`), judged by
    the audit's own clock (the store's, read once when the audit starts).
    """
    cid = row.case_id
    if row.closed_at is None:
        return [Finding("case", cid, "purged while open (二(四): 3 years after closing)")]
    out = []
    if not retention_due(row.closed_at, row.purged_at, rules.retention_years):
        out.append(
            Finding("case", cid, "purged before the retention period (二(四): 3 years) ended")
        )
    if row.closed_at < row.opened_at:
        out.append(Finding("case", cid, "tombstone says it closed before it opened"))
    now = rules.now
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
