"""Calendar years from files: what configuration loads and ``movecar calendar add`` installs.

The library's holiday table ends with 2026 (:mod:`movecar_core.cn_holidays`); the contract
can run to 2027-03-31 and its last deadlines fall in April 2027. An operator adds a year by
writing the State Council's notice as a *year file*
(:meth:`~movecar_core.calendar.YearNotice.from_toml`, ``docs/calendar.md``). Configuration
finds year files here, in this order:

1. ``$MOVECAR_CALENDAR``: paths separated by ``os.pathsep`` (``:``), each a year file or
   a folder of them; when set, it is the whole list (the file's ``[calendar]`` is not read);
2. ``[calendar] years = ["cal-2027.toml", ...]`` in ``movecar.toml`` (relative to the
   file's folder), then the folder ``[calendar] dir`` (default: ``calendar`` beside
   ``movecar.toml``, or in the working directory without one), if it exists.

In a folder, the files named ``cal-YYYY.toml`` are read, in order of name. Each is added
on top of the table (and of the files before it): a year already covered is refused unless
its file says ``replace = true``, so two files for one year are an error, not a silent
choice. ``movecar calendar add FILE`` checks a file against the calendar configured now
and copies it, as ``cal-YYYY.toml``, into the folder: the first folder of
``$MOVECAR_CALENDAR``, else ``[calendar] dir`` or its default.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from movecar_adapters.config import ConfigError
from movecar_core.calendar import (
    MAX_NOTICE_BYTES,
    InvalidCalendarNotice,
    WorkingDayCalendar,
    YearNotice,
)

ENV_CALENDAR = "MOVECAR_CALENDAR"
#: The folder of installed year files, beside movecar.toml, unless ``[calendar] dir`` says.
DEFAULT_DIR = "calendar"


class CalendarFileError(ConfigError):
    """A year file or folder that cannot be read or written (missing, unreadable, no
    folder to install into): a configuration problem, exit 3."""


def installed_name(year: int) -> str:
    """The name a year file is installed under: ``cal-2027.toml``."""
    return f"cal-{year:04d}.toml"


def _is_installed_name(name: str) -> bool:
    stem = name[len("cal-") : -len(".toml")] if name.startswith("cal-") else ""
    return name.endswith(".toml") and len(stem) == 4 and stem.isascii() and stem.isdigit()


def read_notice(path: Path) -> YearNotice:
    """The year file at ``path``: :class:`CalendarFileError` when it cannot be read,
    :class:`~movecar_core.calendar.InvalidCalendarNotice` when its content is refused."""
    shown = _shown(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_NOTICE_BYTES + 1)
    except OSError as exc:
        raise CalendarFileError(f"calendar file {shown}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_NOTICE_BYTES:
        raise InvalidCalendarNotice(
            f"calendar file {shown}: larger than {MAX_NOTICE_BYTES:,} bytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCalendarNotice(f"calendar file {shown}: not UTF-8 text") from None
    return YearNotice.from_toml(text, source=f"calendar file {shown}")


def year_files(entries: Iterable[Path]) -> list[Path]:
    """The year files of ``entries``: a file as it is, a folder as its ``cal-YYYY.toml``
    files in order of name, a missing path refused."""
    found: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            try:
                names = sorted(p.name for p in entry.iterdir() if _is_installed_name(p.name))
            except OSError as exc:
                raise CalendarFileError(
                    f"calendar folder {_shown(entry)}: cannot list it ({exc.strerror})"
                ) from None
            found.extend(entry / name for name in names)
        elif entry.exists():
            found.append(entry)
        else:
            raise CalendarFileError(f"calendar file {_shown(entry)}: not found")
    return found


def load_calendar(
    files: Sequence[Path], base: WorkingDayCalendar | None = None
) -> WorkingDayCalendar:
    """``base`` (the library's table) with every year file of ``files`` added, in order."""
    calendar = base if base is not None else WorkingDayCalendar.default()
    for path in files:
        notice = read_notice(path)
        try:
            calendar = calendar.with_notice(notice)
        except InvalidCalendarNotice as exc:
            raise InvalidCalendarNotice(f"calendar file {_shown(path)}: {exc}") from None
    return calendar


def install(
    path: Path, folder: Path, calendar: WorkingDayCalendar
) -> tuple[YearNotice, Path, bool]:
    """Check the year file at ``path`` against ``calendar`` (the one configured now, which
    must not cover its year unless the file says ``replace = true``) and copy it into
    ``folder`` as ``cal-YYYY.toml``. Returns the notice, where it went, and whether an
    installed file of that year was replaced.

    The copy is written to a temporary file in ``folder`` and renamed over the target, so
    configuration never reads half a file. The bytes are the operator's, comments and all.
    """
    notice = read_notice(path)
    target = folder / installed_name(notice.year)
    replaced = target.exists()
    same = replaced and _same_file(path, target)
    if replaced and not notice.replace and not same:
        raise InvalidCalendarNotice(
            f"calendar file {_shown(path)}: {_shown(target)} is installed already for "
            f"{notice.year}: set replace = true in the file to replace it"
        )
    if same:  # installed already, byte for byte: nothing to do
        return notice, target, False
    try:
        calendar.with_notice(notice)
    except InvalidCalendarNotice as exc:
        raise InvalidCalendarNotice(f"calendar file {_shown(path)}: {exc}") from None
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CalendarFileError(
                f"calendar folder {_shown(folder)}: cannot create it ({exc.strerror})"
            ) from None
    try:
        raw = path.read_bytes()
        fd, temporary = tempfile.mkstemp(prefix=".cal-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CalendarFileError(
            f"calendar folder {_shown(folder)}: cannot write {target.name} ({exc.strerror})"
        ) from None
    return notice, target, replaced


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _shown(path: Path) -> str:
    text = str(path)
    return repr(text if len(text) <= 120 else "…" + text[-119:])
