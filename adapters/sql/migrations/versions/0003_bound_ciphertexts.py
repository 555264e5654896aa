"""Phones bound to their place: AES-GCM associated data names case, event and field.

Revision ID: 0003_bound_ciphertexts
Revises: 0002_ledger
Create Date: 2025-06-01

七(三) "防止 ... 个人信息和数据的泄露、篡改": before this revision a phone's associated data was
its key id only, so a ciphertext copied into another case (or from ``requester_phone``
into ``owner_phone``) decrypted there. From this revision on the library writes only bound
tokens (``~1:<key id>:...``) and never opens a legacy one (``<key id>:...``) outside key
rotation and the audit.

No table changes. The data:

* **with the keys** (:func:`movecar_adapters.sql.engine.upgrade` given a ``KeyRing``, as
  ``connect()``, ``movecar db upgrade`` with ``MOVECAR_KEYS`` set and the SQLite
  auto-upgrade do): every legacy token is rebound to the place it is found in, in this
  migration's one transaction, so either all of them are rebound and the revision is
  0003, or nothing is written. A legacy token whose event's chain hash does not match its
  plaintext (copied in from elsewhere) is not rebound: the audit reports it.
* **without the keys**: nothing is rewritten; the legacy tokens stay, the engine refuses
  them (:class:`~movecar_adapters.crypto.UnboundCiphertext`) and the audit reports each
  case holding one, until ``movecar keys rotate`` rebinds them. ``movecar db upgrade``
  says how many are left.

Downgrade needs the keys when bound tokens exist (the older library cannot read them): it
turns them back into legacy tokens in one transaction, and refuses without the keys.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0003_bound_ciphertexts"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None

#: What the key ring comes under in ``config.attributes`` (set by ``engine.upgrade``).
KEYS_ATTRIBUTE = "movecar_keys"


def _keys() -> Any:
    return context.config.attributes.get(KEYS_ATTRIBUTE)


def upgrade() -> None:
    keys = _keys()
    if keys is None:
        return  # legacy tokens stay, refused by the engine until `movecar keys rotate`
    from movecar_adapters.sql.retention import reencrypt_all

    # Rows that cannot be rebound are left as they were (and reported by the audit):
    # a migration must not fail the whole upgrade over one tampered value.
    reencrypt_all(op.get_bind(), keys)


def downgrade() -> None:
    from movecar_adapters.crypto import place
    from movecar_adapters.sql.events import PII_FIELDS
    from movecar_core.integrity import canonical_json

    conn = op.get_bind()
    events = sa.table(
        "mc_events",
        sa.column("case_id"),
        sa.column("version"),
        sa.column("type_name"),
        sa.column("payload"),
    )
    keys = _keys()
    rows = conn.execute(
        sa.select(events.c.case_id, events.c.version, events.c.type_name, events.c.payload)
        .where(events.c.type_name.in_(sorted(PII_FIELDS)))
        .where(events.c.payload.contains('":"~1:'))
    ).all()
    if rows and keys is None:
        raise RuntimeError(
            f"{len(rows)} events hold phones bound to their place, which the older library "
            "cannot read: downgrade with the keys (engine.downgrade(..., keys=KeyRing))"
        )
    for r in rows:
        payload = json.loads(r.payload)
        for key in PII_FIELDS[r.type_name]:
            value = payload.get(key)
            if isinstance(value, str) and keys.is_bound(value):
                plain = keys.decrypt(value, place(r.case_id, r.version, r.type_name, key))
                payload[key] = keys.encrypt_legacy(plain)
        conn.execute(
            events.update()
            .where(events.c.case_id == r.case_id, events.c.version == r.version)
            .values(payload=canonical_json(payload))
        )
