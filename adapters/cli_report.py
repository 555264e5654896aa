"""``movecar report``: the monthly volume report (话务量报表, 三 and 二(七)) on demand.

``movecar report --month YYYY-MM --actor ID --role ROLE [--csv FILE] [--xlsx FILE]
[--email ADDRESS]... [--json]`` settles the month if it was not (as ``movecar settle
--month`` does: the report and its digest are recorded in the database's evidence), then
builds the report from the database
— each day's 呼入, 接通 and 计费呼叫, the fee, the evidence digest — prints it, writes the
CSV and the XLSX workbook, and mails both to each ``--email`` address through the
configured SMTP server (``$MOVECAR_SMTP_URL`` or ``[smtp]``). The worker mails the same
report by itself on schedule when ``[smtp] report_to`` is set (see ``docs/reports.md``).

The actor's role must read reports (``report.read``: a ``supervisor`` or the
``command_centre``) and, when the month is not yet reported and settled, settle it too
(``month.settle``: a ``supervisor``); a refusal is logged as ``denied:<action>``, nothing
recorded, written or mailed.

Exit codes: 2 for a bad month or address, a month not over, or a refused role; 3 when the
database, a file or the mail server fails.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from movecar_adapters.cli_common import (
    CliError,
    Exit,
    actor_of,
    actor_options,
    authorize,
    database_of,
    say,
)
from movecar_adapters.cli_money import calls, month_arg
from movecar_core.contract import WUJIN_114_2024
from movecar_core.errors import MoveCarError
from movecar_core.mail import check_address
from movecar_core.pricing import TierMode
from movecar_core.roles import Action
from movecar_core.volume import (
    VolumeReport,
    mail_text,
    report_csv,
    report_json,
    report_key,
)

if TYPE_CHECKING:
    from movecar_core.app import MoveCar
    from movecar_core.desk import Desk
    from movecar_core.settlement import ServiceMonth


def address_arg(text: str) -> str:
    try:
        return check_address(text, "--email")
    except MoveCarError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = subparsers.add_parser(
        "report",
        help="the monthly volume report (话务量报表): print it, write CSV/XLSX, mail it",
        description=(
            "The month's inbound and connected calls per day, the billable total, the fee "
            "and the evidence digest, from the database (the month is settled and recorded "
            "first if it was not). Writes the CSV and the XLSX workbook, and mails both "
            "through the configured SMTP server."
        ),
    )
    report.add_argument("--month", required=True, type=month_arg, metavar="YYYY-MM")
    report.add_argument(
        "--db", default=argparse.SUPPRESS, metavar="URL", help="the database (as for the others)"
    )
    report.add_argument("--csv", metavar="FILE", help="write the report as CSV (UTF-8) here")
    report.add_argument("--xlsx", metavar="FILE", help="write the XLSX workbook here")
    report.add_argument(
        "--email",
        action="append",
        type=address_arg,
        metavar="ADDRESS",
        help="mail the report with both files to ADDRESS (repeatable); needs [smtp]",
    )
    report.add_argument(
        "--mode", choices=[m.value for m in TierMode], default=TierMode.VOLUME.value
    )
    report.add_argument("--carried-in", type=calls, default=0, metavar="N")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actor_options(report, what="who asks for the report")
    report.set_defaults(func=run_report)


def _target(text: str | None, flag: str) -> Path | None:
    """A file to write: its folder must exist (checked before anything is recorded)."""
    if text is None:
        return None
    path = Path(text)
    if not text.strip() or path.name in ("", ".", ".."):
        raise CliError(f"{flag} {text[:100]!r}: not a file name")
    if path.is_dir():
        raise CliError(f"{flag} {text[:100]!r}: is a folder", Exit.ENVIRONMENT)
    if not path.parent.is_dir():
        raise CliError(
            f"{flag} {text[:100]!r}: no folder {str(path.parent)[:100]!r}", Exit.ENVIRONMENT
        )
    return path


def _settled(mc: MoveCar, desk: Desk, month: ServiceMonth) -> bool:
    """Whether ``month``'s report and settlement are both recorded: then
    :meth:`~movecar_core.app.MoveCar.volume_report` reads them and records nothing."""
    settlement = getattr(mc.store, "settlement", None)
    return (
        desk.report(month) is not None and settlement is not None and settlement(month) is not None
    )


def run_report(args: argparse.Namespace) -> int:
    from movecar_adapters.config import load_settings
    from movecar_adapters.connect import connect
    from movecar_adapters.report_files import report_attachments, write_file
    from movecar_core.term import ContractTerm

    csv_path, xlsx_path = _target(args.csv, "--csv"), _target(args.xlsx, "--xlsx")
    if (
        csv_path is not None
        and xlsx_path is not None
        and (csv_path.resolve() == xlsx_path.resolve())
    ):
        raise CliError("--csv and --xlsx name the same file")
    recipients: list[str] = list(dict.fromkeys(args.email or ()))
    settings = load_settings(args.config)
    if recipients and settings.smtp is None:
        raise CliError(
            "--email needs a mail server: set MOVECAR_SMTP_URL or [smtp] url in movecar.toml",
            Exit.ENVIRONMENT,
        )
    actor = actor_of(args)  # checked before the database is opened
    url = database_of(args, "report")
    term = ContractTerm.start(WUJIN_114_2024, carried_in=args.carried_in)
    # upgrade=False: a mistyped SQLite path must not become a new, empty database that
    # then reports a month of zero calls.
    with connect(url, term=term, config=args.config, upgrade=False) as mc:
        desk = authorize(mc, actor, Action.READ_REPORT)
        if not _settled(mc, desk, args.month):
            # volume_report settles the month first: the actor must be one who may.
            desk.check(Action.SETTLE_MONTH)
        report = mc.volume_report(args.month, mode=TierMode(args.mode))
        clock = mc.clock
    attachments = report_attachments(report) if (xlsx_path or recipients) else []
    written: list[str] = []
    for path, data in (
        (csv_path, report_csv(report)),
        (xlsx_path, attachments[1].data if attachments else b""),
    ):
        if path is None:
            continue
        try:
            write_file(path, data)
        except OSError as exc:
            raise CliError(
                f"{str(path)[:200]}: cannot write it ({exc.strerror})", Exit.ENVIRONMENT
            ) from None
        written.append(str(path))
    key = None
    if recipients:
        from movecar_adapters.smtp import SmtpMailer

        assert settings.smtp is not None
        # A report mailed on demand is a mail of its own (not the scheduled one, which the
        # receiver would drop as a repeat): its key says so and is unique.
        key = f"{report_key(report.month)}:on-demand:{uuid.uuid4().hex[:12]}"
        subject, body = mail_text(report, [a.filename for a in attachments])
        SmtpMailer(settings.smtp, clock=clock).send(key, recipients, subject, body, attachments)
    if args.json:
        payload: dict[str, Any] = report_json(report)
        payload.update(files=written, mailed_to=recipients, mail_key=key)
        say(None, json.dumps(payload, ensure_ascii=False, indent=2))
        return Exit.OK
    _print(report, written, recipients, settings.smtp.url if recipients and settings.smtp else "")
    return Exit.OK


def _print(report: VolumeReport, written: list[str], recipients: list[str], server: str) -> None:
    s = report.settlement
    tree = s.report.tree
    # (label, value, the contract's term): the Chinese last, where its width cannot
    # break the alignment of the columns.
    rows = [
        ("month", str(report.month), "统计月份"),
        ("inbound", f"{report.inbound:,}", "呼入"),
        ("connected", f"{report.connected:,}", "接通"),
        ("billable", f"{report.billable:,}", "计费呼叫"),
        ("year to date", f"{s.ytd_before:,} -> {s.ytd_after:,}", "本年度累计话务量"),
        ("unit price", f"{s.unit_price} yuan/call ({s.mode.value})", "阶梯单价"),
        ("service fee", f"{s.provisional_fee:,.2f} yuan", "运营服务费"),
        ("digest", s.report.digest, "报表摘要"),
        ("report hash", s.report.hash, "报表哈希"),
        ("tree head", "none (no ledger)" if tree is None else f"{tree.size} leaves, {tree.root}",
         "证据树"),
        ("report due", str(s.deadlines.report_due), "报表提交截止"),
        ("objection by", str(s.deadlines.objection_deadline), "异议截止"),
    ]  # fmt: skip
    busiest = max(report.days, key=lambda d: d.inbound)
    if busiest.inbound:
        rows.append(("busiest day", f"{busiest.day} ({busiest.inbound:,} inbound)", ""))
    if written:
        rows.append(("wrote", ", ".join(written), ""))
    if recipients:
        rows.append(("mailed", f"{', '.join(recipients)} via {server}", ""))
    width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, term in rows if term)
    for label, value, term in rows:
        line = (
            f"{label:<{width}}  {value:<{value_width}}  {term}"
            if term
            else f"{label:<{width}}  {value}"
        )
        say(None, line.rstrip())


__all__ = ["register", "run_report"]
