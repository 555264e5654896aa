"""The test kit's types, registered with Hypothesis through its entry point.

setup.cfg declares ``[options.entry_points] hypothesis = movecar = ...:_hypothesis_setup_hook``;
Hypothesis calls the hook when it is first imported, in every process of a suite that
has movecar installed, so a host writes ``st.from_type(Plate)`` without importing
anything of ours first. Registered:

* :class:`~movecar_core.plates.Plate` and :class:`~movecar_core.phones.PhoneNumber`
  (``Phone``): parsed values of every kind and spelling the parsers accept;
* the command types of :mod:`movecar_core.commands`: commands whose every field passes
  the engine's input checks (a valid plate, phone, location, note, an ``other``
  escalation with its note, a call key of the case), so what a suite's engine refuses
  is a rule of the case, never a malformed argument. Case ids are version-4 hex uuids,
  as the engine writes them; a suite that wants its own cases builds the commands with
  ``st.builds(LocateOwner, st.sampled_from(my_cases))``.

A host's own ``st.register_type_strategy`` for one of these types, made after Hypothesis
is imported, replaces ours, so a suite can narrow any of them.
"""

from __future__ import annotations

__all__ = ["register"]


def register() -> None:
    """Register the test kit's strategies for its types (what the entry point runs)."""
    from hypothesis import strategies as st

    from movecar_core.calls import call_key
    from movecar_core.case import CallOutcome, EscalationReason
    from movecar_core.commands import (
        CallOwner,
        Cancel,
        ConfirmMoved,
        Dispute,
        Escalate,
        LocateOwner,
        OpenCase,
        RecordCallOutcome,
    )
    from movecar_core.phones import PhoneNumber, parse_phone
    from movecar_core.plates import Plate, parse_plate
    from movecar_core.testing.strategies import phones, plates, texts

    notes = texts(min_size=1, max_size=40).filter(lambda text: bool(text.strip()))
    case_ids = st.uuids(version=4).map(lambda u: u.hex)

    def escalation(case_id: str, reason: EscalationReason, note: str | None) -> Escalate:
        # 二(五): "other" is only a reason with a note saying what it is.
        if reason is EscalationReason.OTHER and note is None:
            note = "其他"
        return Escalate(case_id, reason, note)

    st.register_type_strategy(Plate, plates().map(parse_plate))
    st.register_type_strategy(PhoneNumber, phones().map(parse_phone))
    st.register_type_strategy(
        OpenCase, st.builds(OpenCase, plate=plates(), location=notes, requester_phone=phones())
    )
    st.register_type_strategy(LocateOwner, st.builds(LocateOwner, case_ids))
    st.register_type_strategy(CallOwner, st.builds(CallOwner, case_ids))
    st.register_type_strategy(
        RecordCallOutcome,
        st.builds(
            lambda case_id, attempt, outcome: RecordCallOutcome(
                case_id, call_key(case_id, attempt), outcome
            ),
            case_ids,
            st.integers(1, 3),
            st.sampled_from(CallOutcome),
        ),
    )
    st.register_type_strategy(ConfirmMoved, st.builds(ConfirmMoved, case_ids, st.none() | notes))
    st.register_type_strategy(Dispute, st.builds(Dispute, case_ids, notes))
    st.register_type_strategy(Cancel, st.builds(Cancel, case_ids, notes))
    st.register_type_strategy(
        Escalate,
        st.builds(escalation, case_ids, st.sampled_from(EscalationReason), st.none() | notes),
    )


def _hypothesis_setup_hook() -> None:
    """Hypothesis's entry point (the name its docs give to such hooks)."""
    register()
