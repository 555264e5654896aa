"""Mail over SMTP: written notices to the 110 desk, and the monthly report to Party A.

二(五): "乙方因技术故障暂停服务的，应该在故障发生后的 30 分钟内通知公安 110 接警台，并在排除故障
恢复服务 30 分钟内通知公安 110 接警台", and escalations go to 110; 三: "乙方每月 5 日前以电子邮件
的形式提供上月 114 移车话务量报表". :class:`SmtpMailer` is both ports:

* :class:`~movecar_core.ports.CommandCentre` — ``notify(key, subject, message)`` mails the
  notice to the 110 desk's addresses (``to_110``);
* :class:`~movecar_core.mail.ReportMailer` — ``send(key, to, subject, body, attachments)``.

Every mail's ``Message-ID`` is derived from its ``key`` (and the key is in
``X-Movecar-Key``): a worker that crashed after sending and sends again produces the same
``Message-ID``, which the receiving side uses to drop the repeat.

The server comes from a URL (``$MOVECAR_SMTP_URL`` or ``[smtp] url`` in ``movecar.toml``)::

    smtp://127.0.0.1:8025                      plain SMTP (a relay on the host)
    smtp://user:pass@mail.example.cn:587?starttls=1
    smtps://user:pass@mail.example.cn          TLS from the first byte (port 465)

``?timeout=SECONDS`` sets the time allowed for connecting and for each reply (10 s). The
password is never shown: messages and logs carry the URL masked
(:func:`~movecar_adapters.config.mask_url`), and credentials are not sent over an
unencrypted connection except to this host's loopback. Each mail opens its own connection
(notices are rare; a connection kept open would time out between them), and every failure
is a typed :class:`MailError` (a :class:`~movecar_core.errors.PortError`): the outbox keeps
the effect and a worker retries it.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import ipaddress
import logging
import smtplib
import ssl
import urllib.parse
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from movecar_adapters.clock import SystemClock
from movecar_adapters.config import ConfigError, mask_url
from movecar_core.errors import InvalidInput, PortError, excerpt, redact
from movecar_core.mail import (
    Attachment,
    ReportMailer,
    check_address,
    check_addresses,
    check_key,
    check_mail,
    check_subject,
)
from movecar_core.ports import Clock, CommandCentre

log = logging.getLogger("movecar.smtp")

ENV_SMTP_URL = "MOVECAR_SMTP_URL"
#: Time allowed to connect and for each reply of the server, unless the URL says otherwise.
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: A notice's text: one 110 notice is a few lines; a megabyte is a mistake.
MAX_NOTICE_CHARS = 20_000


class MailError(PortError):
    """The mail could not be handed to the SMTP server (base of the SMTP adapter's errors)."""


class MailUnavailable(MailError):
    """The SMTP server cannot be reached or the session broke: connection refused, timed
    out, TLS failed or not offered, the connection dropped. Worth retrying."""


class MailAuthFailed(MailError):
    """The SMTP server refused the credentials (the password is never quoted)."""


class MailRejected(MailError):
    """The SMTP server refused the sender, every recipient, or the message itself."""


class Security:
    """How the connection is protected: names stored in settings, never renamed."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"
    ALL = (NONE, STARTTLS, TLS)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_timeout(instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.05 <= float(value) <= 300
    ):
        raise ConfigError(f"smtp timeout={excerpt(value)}: must be 0.05 to 300 seconds")


@attrs.frozen
class SmtpConfig:
    """Where and how to send mail. Build it with :meth:`from_url`."""

    host: str
    port: int
    security: str
    sender: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)  # secret: never shown
    #: The 110 desk's addresses (二(五) notices); none: this mailer sends no notice.
    to_110: tuple[str, ...] = ()
    #: Party A's addresses for the monthly report (三); none: no report is scheduled.
    report_to: tuple[str, ...] = ()
    timeout_s: float = attrs.field(default=DEFAULT_TIMEOUT_S, validator=_check_timeout)
    #: A CA bundle to verify the server's certificate with (default: the system's).
    ca_file: Path | None = None

    def __attrs_post_init__(self) -> None:
        if self.security not in Security.ALL:
            raise ConfigError(f"smtp security={excerpt(self.security)}: {Security.ALL}")
        plain = self.security == Security.NONE
        if self.username is not None and plain and not _loopback(self.host):
            raise ConfigError(
                f"{self.url}: credentials over an unencrypted connection to "
                f"{self.host}; use ?starttls=1 or smtps://"
            )

    @property
    def url(self) -> str:
        """The server as a URL with the password masked: safe for messages and logs."""
        scheme = "smtps" if self.security == Security.TLS else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            user = urllib.parse.quote(self.username, safe="") + (
                ":***" if self.password is not None else ""
            )
            user += "@"
        query = "?starttls=1" if self.security == Security.STARTTLS else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        sender: str,
        to_110: Sequence[str] = (),
        report_to: Sequence[str] = (),
        timeout_s: float | None = None,
        ca_file: Path | None = None,
        password: str | None = None,
        where: str = "smtp url",
    ) -> SmtpConfig:
        """Parse ``smtp://[user[:password]@]host[:port][?starttls=1&timeout=S]`` or
        ``smtps://...``; raises :class:`~movecar_adapters.config.ConfigError` (the URL
        shown masked). ``password`` (from a password file) stands in for one the URL
        does not carry."""
        if not isinstance(url, str) or not url.strip() or len(url) > 2000:
            raise ConfigError(f"{where}={excerpt(url)}: give smtp://host[:port] or smtps://...")
        shown = mask_url(url.strip())
        if not url.isprintable() or any(c.isspace() for c in url.strip()):
            raise ConfigError(f"{where}={excerpt(shown)}: spaces or control characters")
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{where}={excerpt(shown)}: not a URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ConfigError(f"{where}={excerpt(shown)}: the scheme must be smtp or smtps")
        host = parts.hostname or ""
        if not host or (parts.path not in ("", "/")) or parts.fragment:
            raise ConfigError(f"{where}={excerpt(shown)}: expected {scheme}://host[:port]")
        try:
            query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        except ValueError:
            raise ConfigError(f"{where}={excerpt(shown)}: a malformed query") from None
        unknown = set(query) - {"starttls", "timeout"}
        if unknown or any(len(v) != 1 for v in query.values()):
            raise ConfigError(
                f"{where}={excerpt(shown)}: the query takes starttls=0|1 and timeout=SECONDS, "
                "each once"
            )
        security = Security.TLS if scheme == "smtps" else Security.NONE
        if "starttls" in query:
            flag = query["starttls"][0].lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigError(f"{where}={excerpt(shown)}: starttls must be 0 or 1")
            if flag in _TRUE:
                if scheme == "smtps":
                    raise ConfigError(
                        f"{where}={excerpt(shown)}: smtps is TLS already; starttls is for smtp://"
                    )
                security = Security.STARTTLS
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        if "timeout" in query:
            try:
                timeout = float(query["timeout"][0])
            except ValueError:
                raise ConfigError(f"{where}={excerpt(shown)}: timeout is seconds") from None
        username = urllib.parse.unquote(parts.username) if parts.username else None
        secret = urllib.parse.unquote(parts.password) if parts.password is not None else None
        if secret is not None and password is not None:
            raise ConfigError(f"{where}={excerpt(shown)}: a password in the URL and in a file")
        secret = secret if secret is not None else password
        if secret is not None and username is None:
            raise ConfigError(f"{where}={excerpt(shown)}: a password without a user name")
        try:
            return cls(
                host=host,
                port=port if port is not None else DEFAULT_PORTS[scheme],
                security=security,
                sender=check_address(sender, "smtp from"),
                username=username,
                password=secret,
                to_110=check_addresses(list(to_110), "smtp to_110") if to_110 else (),
                report_to=check_addresses(list(report_to), "smtp report_to") if report_to else (),
                timeout_s=timeout,
                ca_file=ca_file,
            )
        except InvalidInput as exc:
            raise ConfigError(str(exc)) from None


class SmtpMailer:
    """The 110 desk's notices and the monthly report, over SMTP (see the module).

    ``clock`` dates each mail (the engine's clock: ``connect()`` passes it);
    ``ssl_context`` verifies the server (default: the system's CAs, or ``ca_file``).
    """

    def __init__(
        self,
        config: SmtpConfig,
        *,
        clock: Clock | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(config, SmtpConfig):
            raise ConfigError(f"config={type(config).__name__}: not an SmtpConfig")
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpMailer({self.config.url})"

    def close(self) -> None:
        """Nothing to release: each mail has its own connection."""

    # --- the ports --------------------------------------------------------------------

    def notify(self, key: str, subject: str, message: str) -> None:
        """:class:`~movecar_core.ports.CommandCentre`: mail the notice to the 110 desk."""
        if not self.config.to_110:
            raise MailRejected(
                f"{self.config.url}: no address for the 110 desk (set [smtp] to_110)"
            )
        if not isinstance(message, str) or len(message) > MAX_NOTICE_CHARS:
            raise InvalidInput(
                f"message={excerpt(message)}: text of at most {MAX_NOTICE_CHARS} characters"
            )
        mail = self.message(key, self.config.to_110, subject, message)
        self.deliver(mail, self.config.to_110)

    def send(
        self,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        """:class:`~movecar_core.mail.ReportMailer`: one mail with its attachments."""
        recipients = check_addresses(to if isinstance(to, str) else list(to))
        mail = self.message(key, recipients, subject, body, attachments)
        self.deliver(mail, recipients)

    # --- the message and the session -----------------------------------------------------

    def message_id(self, key: str) -> str:
        """The ``Message-ID`` of the mail sent under ``key``: the same for every repeat."""
        digest = hashlib.sha256(check_key(key).encode("ascii")).hexdigest()[:32]
        domain = self.config.sender.rpartition("@")[2]
        return f"<{digest}.movecar@{domain}>"

    def message(
        self,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        attachments: Sequence[Attachment] = (),
    ) -> EmailMessage:
        """The mail as it goes out: UTF-8 text, attachments as named parts."""
        recipients = to if isinstance(to, str) else list(to)
        checked = check_mail(key, recipients, subject, body, list(attachments))
        mail = EmailMessage(policy=email.policy.SMTP)
        mail["From"] = self.config.sender
        mail["To"] = ", ".join(checked.to)
        mail["Subject"] = check_subject(subject)
        mail["Date"] = email.utils.format_datetime(self.clock.now())
        mail["Message-ID"] = self.message_id(key)
        mail["X-Movecar-Key"] = checked.key
        mail.set_content(body, charset="utf-8")
        for item in checked.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            mail.add_attachment(
                item.data, maintype=maintype, subtype=subtype, filename=item.filename
            )
        return mail

    def _ssl(self) -> ssl.SSLContext:
        if self._context is not None:
            return self._context
        try:
            cafile = None if self.config.ca_file is None else str(self.config.ca_file)
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.config.url}: CA file {self.config.ca_file}: cannot use it ({exc})"
            ) from None

    def deliver(self, mail: EmailMessage, recipients: Sequence[str]) -> None:
        """Hand ``mail`` to the server for ``recipients``, in one session.

        Raises :class:`MailUnavailable`, :class:`MailAuthFailed` or :class:`MailRejected`;
        once the server accepted the message, a failure to say goodbye is not one (the
        mail is on its way).
        """
        cfg = self.config
        where = cfg.url
        context = self._ssl() if cfg.security != Security.NONE else None
        session: smtplib.SMTP | None = None
        try:
            if cfg.security == Security.TLS:
                session = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout_s, context=context
                )
            else:
                session = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            if cfg.security == Security.STARTTLS:
                session.starttls(context=context)
            if cfg.username is not None:
                session.login(cfg.username, cfg.password or "")
            refused = session.send_message(mail, from_addr=cfg.sender, to_addrs=list(recipients))
        except smtplib.SMTPAuthenticationError as exc:
            raise MailAuthFailed(
                f"{where}: the server refused the credentials of {cfg.username!r} ({exc.smtp_code})"
            ) from None
        except smtplib.SMTPNotSupportedError:
            what = "STARTTLS" if cfg.security == Security.STARTTLS else "authentication"
            raise MailUnavailable(f"{where}: the server does not offer {what}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = ", ".join(f"{a} {c}" for a, (c, _) in sorted(exc.recipients.items()))
            raise MailRejected(f"{where}: every recipient was refused ({codes})") from None
        except smtplib.SMTPSenderRefused as exc:
            raise MailRejected(
                f"{where}: the sender {cfg.sender} was refused ({exc.smtp_code} "
                f"{_said(exc.smtp_error)})"
            ) from None
        except smtplib.SMTPDataError as exc:
            raise MailRejected(
                f"{where}: the message was refused ({exc.smtp_code} {_said(exc.smtp_error)})"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise MailUnavailable(
                f"{where}: the server answered {exc.smtp_code} {_said(exc.smtp_error)}"
            ) from None
        except TimeoutError:
            raise MailUnavailable(f"{where}: no answer within {cfg.timeout_s:g} s") from None
        except ConnectionRefusedError:
            raise MailUnavailable(f"{where}: connection refused") from None
        except ssl.SSLError as exc:
            raise MailUnavailable(f"{where}: TLS failed ({exc.reason or exc})") from None
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a reply that never came as a disconnection; the timeout is
            # the exception it was handling.
            if isinstance(exc.__context__, TimeoutError):
                raise MailUnavailable(f"{where}: no answer within {cfg.timeout_s:g} s") from None
            raise MailUnavailable(f"{where}: the server closed the connection") from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise MailUnavailable(f"{where}: {reason}") from None
        finally:
            if session is not None:
                _goodbye(session)
        if refused:
            # Some recipients took it: sending again would repeat it to them for nothing
            # (they drop it by its Message-ID) and the refused ones would refuse again.
            log.warning(
                "%s: mail %s refused for %s (delivered to the others)",
                where,
                mail["Message-ID"],
                ", ".join(f"{a} {c}" for a, (c, _) in sorted(refused.items())),
            )


def _said(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return redact(" ".join(raw.split()))[:200]


def _goodbye(session: smtplib.SMTP) -> None:
    """QUIT, then close; neither may turn a sent mail into a failure."""
    try:
        session.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        session.close()


if TYPE_CHECKING:

    def _implements_the_ports(mailer: SmtpMailer) -> tuple[CommandCentre, ReportMailer]:
        return mailer, mailer  # mypy checks that the adapter is both ports


__all__ = [
    "ENV_SMTP_URL",
    "MailAuthFailed",
    "MailError",
    "MailRejected",
    "MailUnavailable",
    "Security",
    "SmtpConfig",
    "SmtpMailer",
]
