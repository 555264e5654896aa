"""A real SMTP server for the mail tests: aiosmtpd on 127.0.0.1, on a free port.

It speaks SMTP as a mail server does (plain, STARTTLS or TLS from the first byte, AUTH
with a user table), refuses the recipients it is told to, and keeps every message it
accepted, parsed. The TLS certificate is made here for 127.0.0.1 with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@attrs.frozen
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


class _Handler:
    def __init__(self, refuse: frozenset[str]) -> None:
        self.refuse = refuse
        self.received: list[Received] = []
        self.lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw, parsed)
            )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's controller, bound to port 0: the port the system chose is read back
    before the controller's own start-up probe connects."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@attrs.frozen
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(folder: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "movecar test mail")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "mail-cert.pem", folder / "mail-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)


class MailServer:
    """One running SMTP server: ``url`` to reach it, ``received`` what it accepted."""

    def __init__(self, controller: _Controller, handler: _Handler, scheme: str) -> None:
        self.controller = controller
        self.handler = handler
        self.scheme = scheme

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def url(self, *, user: str | None = None, password: str | None = None, query: str = "") -> str:
        auth = ""
        if user is not None:
            auth = user + (f":{password}" if password is not None else "") + "@"
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}{query}"


@contextmanager
def mail_server(
    *,
    tls: str | None = None,
    certificate: Certificate | None = None,
    users: dict[str, str] | None = None,
    refuse: frozenset[str] = frozenset(),
) -> Iterator[MailServer]:
    """Run an SMTP server for the duration of the block.

    ``tls``: None (plain), ``"starttls"`` (offered and required before AUTH and mail) or
    ``"implicit"`` (TLS from the first byte); both need ``certificate``. ``users``: AUTH
    is required and checked against this table. ``refuse``: recipients answered 550.
    """
    handler = _Handler(refuse)
    kwargs: dict[str, Any] = {}
    if tls is not None:
        assert certificate is not None
        if tls == "starttls":
            kwargs.update(tls_context=certificate.server_context(), require_starttls=True)
        elif tls == "implicit":
            kwargs.update(ssl_context=certificate.server_context())
        else:
            raise ValueError(tls)
    if users is not None:
        table = dict(users)

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user = auth_data.login.decode()
            ok = table.get(user) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # aiosmtpd knows only its own STARTTLS as TLS (implicit TLS is below it)
            auth_require_tls=tls == "starttls",
        )
    controller = _Controller(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield MailServer(controller, handler, "smtps" if tls == "implicit" else "smtp")
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung mail server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def attachments_of(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    """Each attachment by its (decoded) file name: (content type, decoded bytes)."""
    found = {}
    for part in message.iter_attachments():
        name = part.get_filename()
        assert name is not None
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[name] = (part.get_content_type(), payload)
    return found
