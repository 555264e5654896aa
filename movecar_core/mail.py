"""Mail with attachments: the port the monthly volume report goes out through.

三: "乙方每月 5 日前以电子邮件的形式提供上月 114 移车话务量报表供甲方审核" — the report is an
e-mail to Party A, with the report attached. :class:`ReportMailer` is that port;
``movecar_adapters.smtp.SmtpMailer`` implements it over SMTP, :class:`InMemoryReportMailer`
in memory (for tests, demos and simulations: a real, complete implementation).

Every mail carries a ``key`` unique per mail (the outbox effect's key): a sender that
crashed after sending and before marking the effect done sends it again under the same
key, and the receiving side drops the repeat.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from movecar_core.errors import InvalidInput, excerpt
from movecar_core.text import text_problem

#: One address, as a sender puts it in an envelope: ``local@domain``, printable ASCII, no
#: spaces, commas, angle brackets or line breaks (nothing that could add a header or a
#: second recipient), the domain made of dot-separated labels.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
#: Longest subject and filename a mail takes (a subject is one line; RFC 5322 lines are
#: at most 998 characters, and a mail client shows far fewer).
MAX_SUBJECT = 200
MAX_FILENAME = 120
#: The largest attachment: a month's report is a few kilobytes; 10 MB is a mistake.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
_FILENAME_FORBIDDEN = frozenset('/\\:*?"<>|')


def check_address(value: object, field: str = "address") -> str:
    """``value`` if it is one plain e-mail address (``name@example.cn``), else
    :class:`InvalidInput` naming ``field``."""
    if not isinstance(value, str) or len(value) > 254 or not _ADDRESS.fullmatch(value):
        raise InvalidInput(
            f"{field}={excerpt(value)}: not one e-mail address (name@example.cn, ASCII)"
        )
    return value


def check_addresses(values: object, field: str = "to") -> tuple[str, ...]:
    """One or more addresses (a string or a sequence of strings), each checked; no repeats."""
    items = (values,) if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not items:
        raise InvalidInput(f"{field}={excerpt(values)}: give at least one e-mail address")
    if len(items) > 50:
        raise InvalidInput(f"{field}: {len(items)} addresses; at most 50")
    checked = tuple(check_address(a, field) for a in items)
    if len(set(checked)) != len(checked):
        raise InvalidInput(f"{field}={excerpt(values)}: an address is given twice")
    return checked


def check_subject(value: object, field: str = "subject") -> str:
    """A subject: one line of text, not empty, at most :data:`MAX_SUBJECT` characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}={excerpt(value)}: must be non-empty text")
    if len(value) > MAX_SUBJECT or "\n" in value or "\r" in value:
        raise InvalidInput(
            f"{field}={excerpt(value)}: one line of at most {MAX_SUBJECT} characters"
        )
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(f"{field}={excerpt(value)}: {problem}")
    return value


def check_key(value: object) -> str:
    """A mail's key: one line of printable ASCII (it goes into a header), 1-200 characters."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 200
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise InvalidInput(f"key={excerpt(value)}: 1-200 printable ASCII characters, no space")
    return value


def _check_filename(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_FILENAME
        or value.startswith(".")
        or any(c in _FILENAME_FORBIDDEN or not c.isprintable() for c in value)
    ):
        raise InvalidInput(
            f"filename={excerpt(value)}: a plain file name (no folder, no control characters, "
            f"at most {MAX_FILENAME} characters)"
        )


def _check_content_type(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", value):
        raise InvalidInput(f"content_type={excerpt(value)}: a MIME type such as text/csv")


def _check_data(instance: object, attribute: attrs.Attribute[bytes], value: object) -> None:
    if not isinstance(value, bytes):
        raise InvalidInput(f"data={excerpt(value)}: must be bytes")
    if len(value) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput(f"data: {len(value):,} bytes; at most {MAX_ATTACHMENT_BYTES:,}")


@attrs.frozen
class Attachment:
    """One attached file: its name (Chinese allowed), MIME type and content."""

    filename: str = attrs.field(validator=_check_filename)
    content_type: str = attrs.field(validator=_check_content_type)
    data: bytes = attrs.field(validator=_check_data, repr=False)


@runtime_checkable
class ReportMailer(Protocol):
    """Mail with attachments (三: the monthly report "以电子邮件的形式").

    ``key`` is unique per mail: sent twice (a worker died after sending, before marking
    the effect done), the receiver recognises the repeat by it. Raises
    :class:`~movecar_core.errors.PortError` (or a subclass) when the mail could not be
    handed over; nothing else counts as sent.
    """

    def send(
        self,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        attachments: Sequence[Attachment] = (),
    ) -> None: ...


@attrs.frozen
class SentMail:
    """A mail as :class:`InMemoryReportMailer` keeps it."""

    key: str
    to: tuple[str, ...]
    subject: str
    body: str
    attachments: tuple[Attachment, ...]


def check_mail(
    key: object, to: object, subject: object, body: object, attachments: object
) -> SentMail:
    """The checks every :class:`ReportMailer` applies before sending (a backend choice never
    changes what is accepted); the mail as a value."""
    if not isinstance(body, str) or len(body) > 100_000:
        raise InvalidInput(f"body={excerpt(body)}: text of at most 100,000 characters")
    try:
        body.encode("utf-8")  # a lone surrogate is not text: no mail can carry it
    except UnicodeEncodeError:
        raise InvalidInput(f"body={excerpt(body)}: not encodable as UTF-8") from None
    if not isinstance(attachments, (list, tuple)) or not all(
        isinstance(a, Attachment) for a in attachments
    ):
        raise InvalidInput(f"attachments={excerpt(attachments)}: a sequence of Attachment")
    names = [a.filename for a in attachments]
    if len(set(names)) != len(names):
        raise InvalidInput(f"attachments: a file name is given twice ({names})")
    return SentMail(
        check_key(key), check_addresses(to), check_subject(subject), body, tuple(attachments)
    )


class InMemoryReportMailer:
    """An outbox of mails in memory: keeps each mail once, by key (a repeat is dropped,
    as the receiving side of a real mailer drops it by its Message-ID)."""

    def __init__(self) -> None:
        self.sent: list[SentMail] = []
        #: How many sends were dropped as repeats of a key already sent.
        self.repeats = 0
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def send(
        self,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        mail = check_mail(key, to, subject, body, attachments)
        with self._lock:
            if mail.key in self._keys:
                self.repeats += 1
                return
            self._keys.add(mail.key)
            self.sent.append(mail)


__all__ = [
    "Attachment",
    "InMemoryReportMailer",
    "ReportMailer",
    "SentMail",
    "check_address",
    "check_addresses",
    "check_mail",
]
