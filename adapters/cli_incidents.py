"""Outage and incident sub-commands of the ``movecar`` console script (二(五), annex 2 十六).

Every command names who acts, ``--actor ID --role ROLE`` (docs/roles.md): a
``supervisor`` records (``incident.record``); a ``supervisor``, the ``command_centre`` or an
``auditor`` reads (``incident.read``). A refusal is logged as ``denied:<action>`` and exits 2,
nothing recorded.

* ``movecar outage start --cause TEXT [--at ISO] --actor ID --role ROLE [--json]``: the
  service stopped for a technical fault (at ``--at``, default now); the fault's notice to
  the 110 desk is due within 30 minutes and is sent at once when a desk is configured
* ``movecar outage end [--at ISO] --actor ID --role ROLE [--json]``: the open outage is
  over; the recovery notice is due within 30 minutes, sent at once likewise
* ``movecar outage list [--month YYYY-MM] --actor ID --role ROLE [--json]``: every outage
  with its notices (sent when, late or not, pending), the late or missing notices as
  findings with their delay, and the days without the 24-hour service (五(二)) per month
* ``movecar incident report --kind KIND --summary TEXT [--at ISO] --actor ID --role ROLE
  [--json]``: a security incident (``leak``, ``tampering``, ``loss``, ``audit_failure``,
  ``major_accident``); its written report is due within 24 hours
* ``movecar incident notice ID --kind fault|recovery|security_report [--at ISO]
  [--channel TEXT] --actor ID --role ROLE``: a notice given outside the library (by phone
  to the 110 desk, say) recorded, so it is not sent again
* ``movecar incident list --actor ID --role ROLE [--json]``: the security incidents, their
  reports and findings

The notices go to the engine's 110 desk (``connect()``'s ``command_centre``, from the
configuration); with none configured they stay pending, and ``movecar worker`` sends
them once one is. A notice whose send fails stays pending too: the record of the outage
is written either way, so these commands exit 0 and say on stderr what is still due.
``--at`` needs an offset (``2025-03-14T08:05:00+08:00``): a time without one is refused
(exit 2), as is a time in the future. Exit codes: :mod:`movecar_adapters.cli_common`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from movecar_adapters.cli_common import (
    CliError,
    Exit,
    actor_of,
    actor_options,
    authorize,
    database_of,
    say,
    scrub,
)
from movecar_adapters.connect import connect
from movecar_adapters.sql.store import SqlStore
from movecar_core.app import MoveCar
from movecar_core.errors import MoveCarError
from movecar_core.incidents import (
    Incident,
    IncidentLog,
    Incidents,
    NoticeKind,
    NoticeRun,
    Outage,
    RequiredNotice,
    SecurityIncident,
    SecurityKind,
    interrupted_days,
    late_notices,
    month_of_incidents,
)
from movecar_core.memory import InMemoryCommandCentre
from movecar_core.ports import CommandCentre
from movecar_core.roles import Action
from movecar_core.settlement import ServiceMonth


def desk_of(engine: MoveCar) -> CommandCentre | None:
    """The engine's 110 desk, or None when it is ``connect()``'s in-memory stand-in: a
    notice put there reaches nobody outside this process, and recording it as given would
    be a false record of compliance. It then stays pending for a configured desk."""
    centre = engine.command_centre
    # The exact stand-in only: a host's own desk may build on the in-memory one.
    if centre is None or type(centre) is InMemoryCommandCentre:
        return None
    return centre


def incidents_of(engine: MoveCar) -> Incidents:
    """The incident service on the engine's database, clock, contract and 110 desk
    (:func:`desk_of`). Needs the SQL store: the log must outlive the process."""
    from movecar_adapters.sql.incidents import SqlIncidentStore

    store = engine.store
    if not isinstance(store, SqlStore):
        raise CliError("the incident log needs a database (memory:// lives in one process only)")
    return Incidents(
        SqlIncidentStore(store),
        clock=engine.clock,
        centre=desk_of(engine),
        contract=engine.contract,
    )


def _engine(args: argparse.Namespace) -> MoveCar:
    url = database_of(args, f"movecar {args.command}")
    return connect(url, config=args.config, upgrade=False)


def _incidents(args: argparse.Namespace, mc: MoveCar, action: Action) -> Incidents:
    """The incident service, once ``--actor``/``--role`` may ``action`` (a refusal is
    logged as ``denied:<action>`` and nothing is recorded)."""
    incidents = incidents_of(mc)
    authorize(mc, actor_of(args), action)
    return incidents


def _at(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at {text[:40]!r}: not an ISO 8601 time") from None
    if when.utcoffset() is None:
        raise CliError(f"--at {text[:40]!r}: give an offset, e.g. +08:00")
    return when


def _seconds(delta: dt.timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def notice_json(need: RequiredNotice, as_of: dt.datetime) -> dict[str, Any]:
    # Late iff sent (or, unsent, checked) after the deadline: the delay is over the allowance.
    late = (need.sent.sent_at if need.sent else as_of) > need.due_by
    return {
        "kind": need.kind.value,
        "key": need.key,
        "occurred_at": need.occurred_at.isoformat(),
        "due_by": need.due_by.isoformat(),
        "sent_at": _iso(need.sent.sent_at) if need.sent else None,
        "channel": need.sent.channel if need.sent else None,
        "delay_seconds": _seconds(need.delay),
        "late": late,
    }


def _notices_of(log: IncidentLog, incident_id: str) -> list[RequiredNotice]:
    return [n for n in log.required_notices() if n.incident_id == incident_id]


def incident_json(log: IncidentLog, incident: Incident, as_of: dt.datetime) -> dict[str, Any]:
    notices = [notice_json(n, as_of) for n in _notices_of(log, incident.incident_id)]
    if isinstance(incident, Outage):
        start, end = incident.span(as_of)
        return {
            "incident_id": incident.incident_id,
            "cause": incident.cause,
            "started_at": incident.started_at.isoformat(),
            "ended_at": _iso(incident.ended_at),
            "minutes": int(max(0.0, (end - start).total_seconds()) // 60),
            "recorded_at": incident.recorded_at.isoformat(),
            "actor": incident.actor,
            "interrupted_days": [d.isoformat() for d in interrupted_days([incident], as_of=as_of)],
            "notices": notices,
        }
    return {
        "incident_id": incident.incident_id,
        "kind": incident.kind.value,
        "summary": incident.summary,
        "at": incident.at.isoformat(),
        "recorded_at": incident.recorded_at.isoformat(),
        "actor": incident.actor,
        "notices": notices,
    }


def _delivery(runs: list[NoticeRun]) -> None:
    """What became of the notices the command made due: one line each on stderr when it
    is not sent (the worker sends it), nothing when it was."""
    for run in runs:
        if run.ok and run.outcome == "sent":
            continue
        why = run.error or run.outcome
        print(
            scrub(f"note: {run.kind.value} notice of {run.incident_id} still due: {why}"),
            file=sys.stderr,
        )


def _after(incidents: Incidents, incident: Incident, args: argparse.Namespace, what: str) -> int:
    runs = incidents.run_due()
    log = incidents.log()
    now = incidents.clock.now()
    fresh = log.get(incident.incident_id)
    if args.json:
        say(None, json.dumps(incident_json(log, fresh, now), ensure_ascii=False, indent=2))
    else:
        lines = [f"{what} {fresh.incident_id}"]
        for need in _notices_of(log, fresh.incident_id):
            state = (
                f"sent {need.sent.sent_at.isoformat()} ({need.sent.channel})"
                if need.sent
                else f"due by {need.due_by.isoformat()}"
            )
            lines.append(f"  {need.kind.value} notice: {state}")
        say(None, "\n".join(lines))
    _delivery(runs)
    return Exit.OK


def cmd_outage_start(args: argparse.Namespace) -> int:
    actor_of(args)  # checked before the database is opened
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.RECORD_INCIDENT)
        outage = incidents.start_outage(args.cause, at=_at(args.at), actor=args.actor)
        return _after(incidents, outage, args, f"outage started {outage.started_at.isoformat()}:")


def cmd_outage_end(args: argparse.Namespace) -> int:
    actor_of(args)
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.RECORD_INCIDENT)
        outage = incidents.end_outage(at=_at(args.at), actor=args.actor)
        assert outage.ended_at is not None
        return _after(incidents, outage, args, f"outage ended {outage.ended_at.isoformat()}:")


def cmd_incident_report(args: argparse.Namespace) -> int:
    actor_of(args)
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.RECORD_INCIDENT)
        found = incidents.report_security_incident(
            args.kind, args.summary, at=_at(args.at), actor=args.actor
        )
        return _after(incidents, found, args, f"security incident ({found.kind.value}):")


def cmd_incident_notice(args: argparse.Namespace) -> int:
    actor_of(args)
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.RECORD_INCIDENT)
        found = incidents.record_notice(
            args.incident_id, args.kind, at=_at(args.at), channel=args.channel, actor=args.actor
        )
        return _after(incidents, found, args, f"{args.kind} notice recorded for")


def _month(text: str | None) -> ServiceMonth | None:
    if text is None:
        return None
    try:
        return ServiceMonth.parse(text)
    except MoveCarError:
        raise CliError(f"--month {text[:20]!r}: expected YYYY-MM") from None


def _overlaps(outage: Outage, month: ServiceMonth, now: dt.datetime) -> bool:
    start, end = outage.span(now)
    first, after = month.bounds()
    return start < after and end > first


def cmd_outage_list(args: argparse.Namespace) -> int:
    month = _month(args.month)
    actor_of(args)
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.READ_INCIDENTS)
        log = incidents.log()
        now = incidents.clock.now()
    outages = [o for o in log.outages() if month is None or _overlaps(o, month, now)]
    findings = [
        (need, f)
        for need, f in late_notices(log, now)
        if need.incident_id in {o.incident_id for o in outages}
    ]
    months = sorted(
        {ServiceMonth.of(d) for d in interrupted_days(outages, as_of=now)}
        | ({month} if month else set())
    )
    summary = [month_of_incidents(log, m, now) for m in months]
    if args.json:
        data = {
            "as_of": now.isoformat(),
            "outages": [incident_json(log, o, now) for o in outages],
            "findings": [
                {
                    "clause": f.clause,
                    "when": f.when,
                    "what": f.what,
                    "incident_id": need.incident_id,
                    "notice": need.kind.value,
                    "delay_seconds": _seconds(f.delay),
                }
                for need, f in findings
            ],
            "months": [
                {
                    "month": str(m.month),
                    "interrupted_days": [d.isoformat() for d in m.interrupted_days],
                    "outage_minutes": m.outage_minutes,
                }
                for m in summary
            ],
        }
        say(None, json.dumps(data, ensure_ascii=False, indent=2))
        return Exit.OK
    if not outages:
        say(None, "no outages" + (f" in {month}" if month else ""))
    for outage in outages:
        end = "open" if outage.ended_at is None else outage.ended_at.isoformat()
        say(None, f"{outage.incident_id}  {outage.started_at.isoformat()} – {end}  {outage.cause}")
        for need in _notices_of(log, outage.incident_id):
            if need.sent is None:
                state = f"NOT SENT (due by {need.due_by.isoformat()})"
            else:
                state = f"sent {need.sent.sent_at.isoformat()} ({need.sent.channel})"
            say(None, f"    {need.kind.value} notice: {state}")
    for _, finding in findings:
        say(None, f"FINDING {finding.clause} {finding.what}")
    for m in summary:
        days = ", ".join(d.isoformat() for d in m.interrupted_days) or "none"
        say(
            None,
            f"{m.month}: {len(m.interrupted_days)} day(s) without the 24-hour service "
            f"(五(二)): {days}; {m.outage_minutes} min of outage",
        )
    return Exit.OK


def cmd_incident_list(args: argparse.Namespace) -> int:
    actor_of(args)
    with _engine(args) as mc:
        incidents = _incidents(args, mc, Action.READ_INCIDENTS)
        log = incidents.log()
        now = incidents.clock.now()
    found: list[SecurityIncident] = list(log.security_incidents())
    late = [(n, f) for n, f in late_notices(log, now) if n.kind is NoticeKind.SECURITY_REPORT]
    if args.json:
        data = {
            "as_of": now.isoformat(),
            "incidents": [incident_json(log, i, now) for i in found],
            "findings": [
                {
                    "clause": f.clause,
                    "when": f.when,
                    "what": f.what,
                    "incident_id": n.incident_id,
                    "delay_seconds": _seconds(f.delay),
                }
                for n, f in late
            ],
        }
        say(None, json.dumps(data, ensure_ascii=False, indent=2))
        return Exit.OK
    if not found:
        say(None, "no security incidents")
    for item in found:
        (need,) = _notices_of(log, item.incident_id)
        state = (
            f"reported {need.sent.sent_at.isoformat()} ({need.sent.channel})"
            if need.sent
            else f"NOT REPORTED (due by {need.due_by.isoformat()})"
        )
        say(None, f"{item.incident_id}  {item.kind.value}  {item.at.isoformat()}  {state}")
        say(None, f"    {item.summary}")
    for _, finding in late:
        say(None, f"FINDING {finding.clause} {finding.what}")
    return Exit.OK


def _common(parser: argparse.ArgumentParser, *, at: bool = True, json_: bool = True) -> None:
    parser.add_argument(
        "--db", default=argparse.SUPPRESS, metavar="URL", help="database URL (as for the others)"
    )
    if at:
        parser.add_argument(
            "--at", metavar="ISO", help="when it happened, with an offset (default: now)"
        )
    actor_options(parser, what="who records it" if at else "who reads it")
    if json_:
        parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: Any) -> None:
    """Add ``outage`` and ``incident`` to the ``movecar`` parser."""
    outage = subparsers.add_parser("outage", help="technical outages (二(五): notify 110)")
    out_sub = outage.add_subparsers(dest="outage_command", required=True)
    start = out_sub.add_parser("start", help="the service stopped for a technical fault")
    start.add_argument("--cause", required=True, metavar="TEXT", help="what failed (one line)")
    _common(start)
    start.set_defaults(func=cmd_outage_start)
    end = out_sub.add_parser("end", help="the fault is removed, the service restored")
    _common(end)
    end.set_defaults(func=cmd_outage_end)
    listing = out_sub.add_parser("list", help="outages, their notices, findings, days")
    listing.add_argument("--month", metavar="YYYY-MM", help="only the outages of this month")
    _common(listing, at=False)
    listing.set_defaults(func=cmd_outage_list)

    incident = subparsers.add_parser(
        "incident", help="security incidents (annex 2 十六: report within 24 hours)"
    )
    inc_sub = incident.add_subparsers(dest="incident_command", required=True)
    report = inc_sub.add_parser("report", help="record a security incident")
    report.add_argument(
        "--kind", required=True, choices=[k.value for k in SecurityKind], help="what happened"
    )
    report.add_argument("--summary", required=True, metavar="TEXT", help="what (one line)")
    _common(report)
    report.set_defaults(func=cmd_incident_report)
    notice = inc_sub.add_parser(
        "notice", help="record a notice given outside the library (by phone, say)"
    )
    notice.add_argument("incident_id", metavar="ID", help="outage-0001, security-0001, ...")
    notice.add_argument("--kind", required=True, choices=[k.value for k in NoticeKind])
    notice.add_argument("--channel", default="phone", help="how it was given (default phone)")
    _common(notice)
    notice.set_defaults(func=cmd_incident_notice)
    listing = inc_sub.add_parser("list", help="security incidents, their reports, findings")
    _common(listing, at=False)
    listing.set_defaults(func=cmd_incident_list)
