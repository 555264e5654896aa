"""Tamper evidence: a hash chain per case, and digests of monthly reports.

七(三) asks that data be protected from "篡改、丢失" (tampering, loss) and 五(三) lets Party A
withhold a month's fee when data was falsified ("如发现有弄虚作假的，甲方有权不向乙方支付当月
服务费"), so stored history must make a change detectable. Each event's hash covers its
case, its position, its type, its payload and the previous event's hash: changing,
deleting, inserting or reordering any event breaks the chain from there on.

The hash is computed over the *plaintext* payload in a canonical JSON form, so that
re-encrypting stored personal data with a new key (key rotation) keeps the chain valid.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

#: The "previous hash" of a case's first event.
GENESIS = "0" * 64


#: Strings whose JSON form is themselves in quotes (no escaping needed).
_PLAIN = re.compile(r"[A-Za-z0-9._:-]*\Z")

#: Built once: ``json.dumps`` with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """One spelling for equal JSON values: sorted keys, no spaces, UTF-8 kept."""
    return _CANONICAL.encode(value)


def chain_hash(
    previous: str, case_id: str, version: int, type_name: str, payload: Mapping[str, Any]
) -> str:
    """The hash of event number ``version`` (1-based) of ``case_id``."""
    body = canonical_json([previous, case_id, version, type_name, payload])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@attrs.frozen
class StoredLink:
    """One stored event as the chain sees it."""

    version: int
    type_name: str
    payload: Mapping[str, Any]
    hash: str


@attrs.frozen
class ChainBreak:
    """Where a case's stored chain stops verifying, and why."""

    case_id: str
    version: int
    why: str


def verify_chain(
    case_id: str, links: Iterable[StoredLink], start: str = GENESIS, first_version: int = 1
) -> ChainBreak | None:
    """The first break in a case's chain, or None when every link verifies.

    ``start`` and ``first_version`` let a chain whose older events were purged under the
    retention policy be verified from its retained anchor (the hash of the last purged
    event, kept for that purpose).
    """
    previous = start
    expected = first_version
    for link in links:
        if link.version != expected:
            return ChainBreak(case_id, expected, f"version {link.version} where {expected} due")
        if chain_hash(previous, case_id, link.version, link.type_name, link.payload) != link.hash:
            return ChainBreak(case_id, link.version, "stored hash does not match the event")
        previous = link.hash
        expected += 1
    return None


def report_digest(items: Iterable[tuple[str, int, str]]) -> str:
    """The digest of a monthly report: the (case id, version, hash) of every event it counts.

    Order does not matter (sorted first); a changed, removed or added event changes it.
    """
    h = hashlib.sha256()
    for case_id, version, event_hash in sorted(items):
        h.update(f"{case_id}\x1f{version}\x1f{event_hash}\x1e".encode())
    return h.hexdigest()


def chain_hash_of_json(
    previous: str, case_id: str, version: int, type_name: str, payload_json: str
) -> str:
    """:func:`chain_hash` when the payload's :func:`canonical_json` is already at hand.

    Equal to ``chain_hash(previous, case_id, version, type_name, payload)`` for
    ``payload_json == canonical_json(payload)`` (a JSON array's canonical form is its
    elements' canonical forms joined by commas); a bulk writer saves one encoding per event.
    """
    return chain_of_json(previous, case_id, version, (type_name,), (payload_json,))[0]


def chain_of_json(
    previous: str,
    case_id: str,
    first_version: int,
    type_names: Sequence[str],
    payloads_json: Sequence[str],
) -> list[str]:
    """The hashes of consecutive events of one case, from their type names and payloads'
    canonical JSON (parallel sequences).

    Event ``first_version + i`` gets ``chain_hash_of_json(hash of the one before, ...)``;
    ``previous`` is the hash before the first (:data:`GENESIS` for a new case).
    """
    if len(type_names) != len(payloads_json):
        raise ValueError(f"{len(type_names)} type names for {len(payloads_json)} payloads")
    out = []
    links = zip(itertools.count(first_version), type_names, payloads_json)
    if type(first_version) is int and _PLAIN.match(previous + case_id + "".join(type_names)):
        # Nothing to escape in the head (hashes are hex digits): its canonical JSON is
        # written directly, without the encoder's cost.
        for version, name, payload_json in links:
            body = f'["{previous}","{case_id}",{version},"{name}",{payload_json}]'
            previous = hashlib.sha256(body.encode()).hexdigest()
            out.append(previous)
        return out
    for version, name, payload_json in links:
        head = canonical_json([previous, case_id, version, name])
        previous = hashlib.sha256(f"{head[:-1]},{payload_json}]".encode()).hexdigest()
        out.append(previous)
    return out
