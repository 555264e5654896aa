"""A vehicle-owner platform on 127.0.0.1 that the tests make misbehave on purpose, and a
throw-away PKI (a CA, the platform's certificate, a client certificate) for mutual TLS.

The platform is a real ``http.server`` in a thread: each request is answered by the first
queued behaviour (``platform.then(...)``), or by ``platform.default`` when none is queued.
A behaviour is a function of the request handler; the helpers below build the ones the
tests need (an answer, a slow answer, a body cut short, a huge body, ...).
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Behaviour = Callable[["Handler"], None]

KNOWN_PLATE = "苏D12345"
KNOWN_PHONE = "13912345678"


class Handler(http.server.BaseHTTPRequestHandler):
    server: PlatformServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers.items())))
        behaviour = self.server.next_behaviour()
        behaviour(self)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def plate(self) -> str:
        """The plate of a request to /vehicles/{plate}, decoded."""
        return urllib.parse.unquote(self.path.rsplit("/", 1)[-1])

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        if headers and "Date" in headers:
            self.send_response_only(status)  # without the server's own Date
        else:
            self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass  # the client hung up first (it refused a huge body): what we wanted


class PlatformServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owners: dict[str, str], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.owners = owners
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.queue: list[Behaviour] = []
        self.default: Behaviour = answer_owners
        self.lock = threading.Lock()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    def next_behaviour(self) -> Behaviour:
        with self.lock:
            return self.queue.pop(0) if self.queue else self.default

    def then(self, *behaviours: Behaviour) -> PlatformServer:
        with self.lock:
            self.queue.extend(behaviours)
        return self

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def start(self) -> PlatformServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


def answer_owners(h: Handler) -> None:
    """The default protocol, honestly: 200 with the owner, or 404."""
    plate = h.plate()
    phone = h.server.owners.get(plate)
    if phone is None:
        h.send(404, b'{"error": "not found"}')
    else:
        body = {"plate": plate, "owner_phone": phone, "source": "jsjj-test"}
        h.send(200, json.dumps(body, ensure_ascii=False).encode())


def status(code: int, headers: dict[str, str] | None = None) -> Behaviour:
    return lambda h: h.send(code, b'{"error": "x"}', headers=headers)


def body(data: Any, content_type: str | None = "application/json") -> Behaviour:
    raw = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return lambda h: h.send(200, raw, content_type=content_type)


def slow(seconds: float, then: Behaviour = answer_owners) -> Behaviour:
    def behave(h: Handler) -> None:
        time.sleep(seconds)
        then(h)

    return behave


def cut_short(h: Handler) -> None:
    """Promise 200 bytes, send 20, hang up: the body is cut short on the wire."""
    h.send(200, b'{"plate": "\xe8\x8b\x8fD1', length=200)
    h.close_connection = True
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)


def huge_declared(h: Handler) -> None:
    """A Content-Length of 50 MB (and the start of it)."""
    h.send(200, b"[" + b"1," * 1000, length=50_000_000)
    h.close_connection = True


def huge_chunked(h: Handler) -> None:
    """No Content-Length: chunk after chunk of a JSON array, 8 MB in all."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"1," * 32_768
    try:
        h.wfile.write(b"%x\r\n[\r\n" % 1)
        for _ in range(128):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass
    h.close_connection = True


def free_port() -> int:
    """A port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- a throw-away PKI for mutual TLS ---------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all as PEM files
    under ``folder``: ``ca.pem``, ``server.pem``/``server.key``, ``client.pem``/
    ``client.key``."""

    def __init__(self, folder: Path, name: str = "test") -> None:
        self.folder = folder
        self.name = name
        now = dt.datetime.now(dt.UTC)
        self._now = now
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{name} CA"))
            .issuer_name(_name(f"{name} CA"))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )  # fmt: skip
        self.ca = folder / f"{name}-ca.pem"
        self.ca.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self._issue(
            "server", ExtendedKeyUsageOID.SERVER_AUTH, ip=True
        )
        self.client_cert, self.client_key = self._issue("client", ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(self, who: str, usage: x509.ObjectIdentifier, ip: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{who}.movecar.test"))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - dt.timedelta(days=1))
            .not_valid_after(self._now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        if ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_path = self.folder / f"{self.name}-{who}.pem"
        key_path = self.folder / f"{self.name}-{who}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path

    def server_context(self, require_client: bool = True) -> ssl.SSLContext:
        """The platform's side: its certificate, and client certificates from this CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def running(owners: dict[str, str], tls: ssl.SSLContext | None = None) -> Iterator[PlatformServer]:
    """A started platform, stopped afterwards (for a fixture's ``yield from``)."""
    server = PlatformServer(owners, tls).start()
    try:
        yield server
    finally:
        server.stop()


def trickle(every_s: float, chunks: int = 50) -> Behaviour:
    """A valid answer sent one byte at a time, ``every_s`` apart (a slowloris platform)."""

    def behave(h: Handler) -> None:
        data = json.dumps({"owner_phone": KNOWN_PHONE}).encode().ljust(chunks)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            for i in range(len(data)):
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
                time.sleep(every_s)
        except OSError:
            pass

    return behave
