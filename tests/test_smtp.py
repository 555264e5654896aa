"""The SMTP adapter against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, over
plain SMTP, STARTTLS and TLS, with and without AUTH, and every way it can fail."""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mail_support import (
    Certificate,
    attachments_of,
    closed_port,
    mail_server,
    make_certificate,
    silent_server,
)

from movecar_adapters.config import ConfigError
from movecar_adapters.smtp import (
    MailAuthFailed,
    MailRejected,
    MailUnavailable,
    Security,
    SmtpConfig,
    SmtpMailer,
)
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidInput, PortError
from movecar_core.mail import Attachment, ReportMailer

NOW = dt.datetime(2024, 6, 3, 9, 0, tzinfo=SHANGHAI)
SENDER = "114-movecar@telecom.example.cn"
DESK = "110-desk@gaj.example.gov.cn"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("mailcert"))


def mailer(url: str, *, certificate: Certificate | None = None, **kw: object) -> SmtpMailer:
    config = SmtpConfig.from_url(url, sender=SENDER, to_110=[DESK], **kw)  # type: ignore[arg-type]
    context = None if certificate is None else certificate.client_context()
    return SmtpMailer(config, clock=ManualClock(NOW), ssl_context=context)


def test_a_notice_to_110_arrives_with_its_key_and_chinese_text() -> None:
    with mail_server() as server:
        smtp = mailer(server.url())
        assert isinstance(smtp, ReportMailer)  # and a CommandCentre: mypy checks both
        smtp.notify(
            "c0ffee:5:notify_110",
            "114 挪车转警 苏D12345",
            "案件 c0ffee：苏D12345，武进区湖塘镇花园街 8 号，转警原因 emergency_lane_blocked",
        )
        [got] = server.received
    assert got.mail_from == SENDER and got.rcpt_tos == (DESK,)
    m = got.message
    assert m["Subject"] == "114 挪车转警 苏D12345"
    assert m["From"] == SENDER and m["To"] == DESK
    assert m["X-Movecar-Key"] == "c0ffee:5:notify_110"
    assert m["Message-ID"].strip() == smtp.message_id("c0ffee:5:notify_110")
    assert email.utils.parsedate_to_datetime(m["Date"]) == NOW
    assert m.get_content_type() == "text/plain"
    assert m.get_content().strip().endswith("转警原因 emergency_lane_blocked")
    assert "武进区湖塘镇花园街" in m.get_content()
    # The subject is encoded for the wire (RFC 2047): every header line is ASCII.
    headers = got.raw.partition(b"\r\n\r\n")[0]
    assert headers.isascii() and b"=?utf-8?" in headers


def test_a_repeat_has_the_same_message_id_so_the_receiver_drops_it() -> None:
    with mail_server() as server:
        smtp = mailer(server.url())
        for _ in range(2):  # a worker died after sending, before marking the effect done
            smtp.notify("case1:7:notify_110", "114 挪车转警", "同一通知")
        smtp.notify("case2:7:notify_110", "114 挪车转警", "另一通知")
        ids = [r.message["Message-ID"] for r in server.received]
    assert ids[0] == ids[1] != ids[2]
    assert len({r.message["X-Movecar-Key"] for r in server.received}) == 2


def test_a_report_mail_carries_its_attachments_decoded_intact() -> None:
    csv_bytes = "日期,呼入（次）\r\n2024-05-01,3\r\n".encode("utf-8-sig")
    blob = bytes(range(256)) * 40  # binary, as a workbook is
    with mail_server() as server:
        mailer(server.url()).send(
            "monthly_report:2024-05",
            ["a@gaj.example.gov.cn", "b@gaj.example.gov.cn"],
            "114 移车话务量报表 2024年05月",
            "呼入：3 次\n运营服务费：5.70 元\n",
            [
                Attachment("114移车话务量报表_2024-05.csv", "text/csv", csv_bytes),
                Attachment(
                    "114移车话务量报表_2024-05.xlsx",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    blob,
                ),
            ],
        )
        [got] = server.received
    assert got.rcpt_tos == ("a@gaj.example.gov.cn", "b@gaj.example.gov.cn")
    assert got.message["Subject"] == "114 移车话务量报表 2024年05月"
    body = got.message.get_body(("plain",))
    assert body is not None and "运营服务费：5.70 元" in body.get_content()
    files = attachments_of(got.message)
    assert files == {
        "114移车话务量报表_2024-05.csv": ("text/csv", csv_bytes),
        "114移车话务量报表_2024-05.xlsx": (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            blob,
        ),
    }


def test_starttls_with_auth(certificate: Certificate) -> None:
    with mail_server(tls="starttls", certificate=certificate, users={"movecar": "s3cret"}) as s:
        url = s.url(user="movecar", password="s3cret", query="?starttls=1")
        smtp = mailer(url, certificate=certificate)
        assert smtp.config.security == Security.STARTTLS
        smtp.notify("k:1:notify_110", "转警", "经 STARTTLS 送达")
        [got] = s.received
    assert got.message.get_content().strip() == "经 STARTTLS 送达"


def test_starttls_refused_when_the_server_does_not_offer_it(certificate: Certificate) -> None:
    with mail_server() as server:  # plain only
        smtp = mailer(server.url(query="?starttls=1"), certificate=certificate)
        with pytest.raises(MailUnavailable, match="does not offer STARTTLS"):
            smtp.notify("k:1:notify_110", "转警", "x")
        assert server.received == []


# aiosmtpd warns because it cannot see the TLS it runs under (implicit TLS is below it).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_with_auth(certificate: Certificate) -> None:
    with mail_server(tls="implicit", certificate=certificate, users={"u": "p w"}) as server:
        smtp = mailer(server.url(user="u", password="p%20w"), certificate=certificate)
        assert smtp.config.security == Security.TLS and smtp.config.password == "p w"
        smtp.notify("k:2:notify_110", "转警", "smtps")
        assert len(server.received) == 1


def test_an_untrusted_certificate_is_refused(certificate: Certificate) -> None:
    with mail_server(tls="implicit", certificate=certificate) as server:
        smtp = mailer(server.url())  # the system's CAs do not know the test certificate
        with pytest.raises(MailUnavailable, match="TLS failed"):
            smtp.notify("k:3:notify_110", "转警", "x")
        assert server.received == []


def test_wrong_credentials_are_auth_failed_and_never_quote_the_password(
    certificate: Certificate,
) -> None:
    with mail_server(tls="starttls", certificate=certificate, users={"movecar": "right"}) as s:
        smtp = mailer(
            s.url(user="movecar", password="wrong-pw-13912345678", query="?starttls=1"),
            certificate=certificate,
        )
        with pytest.raises(MailAuthFailed) as caught:
            smtp.notify("k:4:notify_110", "转警", "x")
        assert s.received == []
    text = str(caught.value)
    assert "wrong-pw" not in text and "13912345678" not in text and "***" in text
    assert isinstance(caught.value, PortError)
    assert "wrong-pw" not in repr(smtp) + repr(smtp.config)


def test_refused_recipients_are_rejected() -> None:
    with mail_server(refuse=frozenset({DESK})) as server:
        with pytest.raises(MailRejected, match="every recipient was refused"):
            mailer(server.url()).notify("k:5:notify_110", "转警", "x")
        assert server.received == []


def test_some_recipients_refused_still_delivers_to_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with mail_server(refuse=frozenset({"gone@example.cn"})) as server:
        mailer(server.url()).send("r:1", ["gone@example.cn", "here@example.cn"], "报表", "正文")
        [got] = server.received
    assert got.rcpt_tos == ("here@example.cn",)
    assert "gone@example.cn 550" in caplog.text


def test_connection_refused_is_unavailable() -> None:
    smtp = mailer(f"smtp://127.0.0.1:{closed_port()}")
    with pytest.raises(MailUnavailable, match="connection refused"):
        smtp.notify("k:6:notify_110", "转警", "x")


def test_a_server_that_never_answers_times_out_in_time() -> None:
    with silent_server() as port:
        smtp = mailer(f"smtp://127.0.0.1:{port}?timeout=0.3")
        started = time.monotonic()
        with pytest.raises(MailUnavailable, match=r"no answer within 0.3 s"):
            smtp.notify("k:7:notify_110", "转警", "x")
        assert time.monotonic() - started < 5


def test_a_notice_without_a_110_address_is_refused() -> None:
    config = SmtpConfig.from_url("smtp://127.0.0.1:1", sender=SENDER)
    with pytest.raises(MailRejected, match="to_110"):
        SmtpMailer(config).notify("k:8:notify_110", "转警", "x")


@pytest.mark.parametrize(
    ("key", "to", "subject", "body"),
    [
        ("has space", [DESK], "s", "b"),
        ("", [DESK], "s", "b"),
        ("k", [], "s", "b"),
        ("k", ["not an address"], "s", "b"),
        ("k", [f"{DESK}\r\nBcc: x@evil.example"], "s", "b"),
        ("k", [DESK, DESK], "s", "b"),
        ("k", [DESK], "two\r\nBcc: x@evil.example", "b"),
        ("k", [DESK], "", "b"),
        ("k", [DESK], "s", "\ud800"),
        ("k", [DESK], "s", 42),
    ],
)
def test_hostile_mail_is_refused_before_anything_is_sent(
    key: str, to: list[str], subject: str, body: str
) -> None:
    with mail_server() as server:
        with pytest.raises(InvalidInput):
            mailer(server.url()).send(key, to, subject, body)
        assert server.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:25",
        "smtp://",
        "smtp://127.0.0.1:notaport",
        "smtp://127.0.0.1:99999",
        "smtp://127.0.0.1/path",
        "smtp://127.0.0.1?starttls=maybe",
        "smtp://127.0.0.1?tls=1",
        "smtp://127.0.0.1?timeout=0",
        "smtp://127.0.0.1?timeout=abc",
        "smtps://127.0.0.1?starttls=1",
        "smtp://:pw@127.0.0.1",
        "smtp://user:pw@mail.example.cn:25",  # credentials in clear over the network
        "smtp://127.0.0.1 :25",
        "",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpConfig.from_url(url, sender=SENDER)
    assert ":pw@" not in str(caught.value)  # a password is masked, whatever was wrong


def test_url_forms() -> None:
    plain = SmtpConfig.from_url("smtp://127.0.0.1:8025", sender=SENDER)
    assert (plain.host, plain.port, plain.security, plain.username) == (
        "127.0.0.1", 8025, Security.NONE, None,
    )  # fmt: skip
    start = SmtpConfig.from_url("smtp://u%40x:p%3Aw@mail.example.cn:587?starttls=1", sender=SENDER)
    assert (start.username, start.password, start.security) == ("u@x", "p:w", Security.STARTTLS)
    assert start.url == "smtp://u%40x:***@mail.example.cn:587?starttls=1"
    tls = SmtpConfig.from_url("smtps://mail.example.cn?timeout=2.5", sender=SENDER)
    assert (tls.port, tls.security, tls.timeout_s) == (465, Security.TLS, 2.5)
    loop = SmtpConfig.from_url("smtp://u:p@[::1]:25", sender=SENDER)  # loopback: allowed
    assert loop.url == "smtp://u:***@[::1]:25"


@given(st.text(max_size=80), st.text(alphabet="abcXYZ019!:@%", min_size=1, max_size=20))
def test_any_url_is_a_config_or_a_config_error_and_never_shows_its_password(
    noise: str, secret: str
) -> None:
    url = f"smtp://user:{secret}Zq9@{noise}"
    shown = ""
    try:
        config = SmtpConfig.from_url(url, sender=SENDER)
        shown = config.url + repr(config)
    except ConfigError as exc:  # any other error fails the test
        shown = str(exc)
    assert f"{secret}Zq9" not in shown


def test_attachments_are_plain_files_of_bytes() -> None:
    with pytest.raises(InvalidInput):
        Attachment("../etc/passwd", "text/plain", b"x")
    with pytest.raises(InvalidInput):
        Attachment("a.csv", "text/csv", "not bytes")  # type: ignore[arg-type]
