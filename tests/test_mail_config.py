"""Mail settings ($MOVECAR_SMTP_URL, [smtp], [notices]) and what connect() wires from them;
the log adapter of the 110 desk's notices."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mail_support import mail_server

from movecar_adapters.config import ConfigError, load_settings
from movecar_adapters.connect import connect
from movecar_adapters.notices import LogCommandCentre
from movecar_adapters.report_files import report_attachments
from movecar_adapters.smtp import Security, SmtpMailer
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidInput, PortError
from movecar_core.memory import InMemoryCommandCentre
from movecar_core.volume import ReportDelivery


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "movecar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_smtp_from_the_file_with_a_password_file(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("s3 cret\n", encoding="utf-8")
    path = toml(
        tmp_path,
        '[smtp]\nurl = "smtp://mail.example.cn:587?starttls=1"\nuser = "movecar@x"\n'
        'password_file = "smtp-password"\nfrom = "a@example.cn"\nto_110 = "desk@example.cn"\n'
        'report_to = ["p1@example.cn", "p2@example.cn"]\ntimeout_s = 3\nca_file = "ca.pem"\n',
    )
    smtp = load_settings(path, environ={}).smtp
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.security) == ("mail.example.cn", 587, Security.STARTTLS)
    assert (smtp.username, smtp.password, smtp.sender) == ("movecar@x", "s3 cret", "a@example.cn")
    assert smtp.to_110 == ("desk@example.cn",)
    assert smtp.report_to == ("p1@example.cn", "p2@example.cn")
    assert smtp.timeout_s == 3 and smtp.ca_file == tmp_path / "ca.pem"
    assert "s3 cret" not in repr(smtp) and "s3 cret" not in smtp.url


def test_the_environment_names_the_server() -> None:
    smtp = load_settings(
        None, environ={"MOVECAR_SMTP_URL": "smtps://u:p@mail.example.cn", "MOVECAR_CONFIG": ""}
    ).smtp
    assert smtp is not None and smtp.security == Security.TLS and smtp.password == "p"
    assert smtp.sender == "movecar@localhost" and smtp.to_110 == ()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[smtp]\nurl = "smtp://u:pw@mail.example.cn:587?starttls=1"\n', "password_file"),
        ('[smtp]\nfrom = "a@example.cn"\n', "no url"),
        ('[smtp]\nurl = "smtp://127.0.0.1"\nto_110 = "no address"\n', "to_110"),
        ('[smtp]\nurl = "smtp://127.0.0.1"\nto_110 = ["a@b.cn", 3]\n', "to_110"),
        ('[smtp]\nurl = "smtp://127.0.0.1"\nport = 25\n', "unknown setting"),
        ('[smtp]\nurl = "smtp://127.0.0.1"\npassword_file = "missing"\n', "cannot read"),
        ('[smtp]\nurl = "smtp://127.0.0.1"\ntimeout_s = 0\n', "timeout"),
        ('[smtp]\nurl = "ftp://127.0.0.1"\n', "smtp or smtps"),
        ('[smtp]\nurl = "smtp://mail.example.cn"\nuser = "u"\n', "unencrypted connection"),
        ("[notices]\nlog = 3\n", "must be str"),
    ],
)
def test_bad_mail_settings_are_config_errors(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "pw").write_text("x", encoding="utf-8")
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError, match=why) as caught:
        load_settings(path, environ={})
    assert ":pw@" not in str(caught.value)


def test_connect_wires_the_110_desk_and_the_report_over_smtp(tmp_path: Path) -> None:
    with mail_server() as server:
        path = toml(
            tmp_path,
            f'[smtp]\nurl = "{server.url()}"\nfrom = "a@example.cn"\n'
            'to_110 = "desk@example.cn"\nreport_to = "p@example.cn"\n',
        )
        with connect("memory://", config=path, environ={}, clock=ManualClock()) as mc:
            assert isinstance(mc.command_centre, SmtpMailer)
            assert isinstance(mc.reports, ReportDelivery)
            assert mc.reports.mailer is mc.command_centre
            assert mc.reports.to == ("p@example.cn",)
            assert mc.reports.render is report_attachments
            mc.command_centre.notify("k:1:notify_110", "转警", "测试")
        assert len(server.received) == 1


def test_connect_without_to_110_keeps_the_given_or_memory_desk(tmp_path: Path) -> None:
    path = toml(tmp_path, '[smtp]\nurl = "smtp://127.0.0.1:1"\nfrom = "a@example.cn"\n')
    with connect("memory://", config=path, environ={}) as mc:
        assert isinstance(mc.command_centre, InMemoryCommandCentre) and mc.reports is None
    mine = InMemoryCommandCentre()
    path = toml(tmp_path, '[smtp]\nurl = "smtp://127.0.0.1:1"\nto_110 = "d@example.cn"\n')
    with connect("memory://", config=path, environ={}, command_centre=mine) as mc:
        assert mc.command_centre is mine


def test_connect_writes_notices_to_the_log_file(tmp_path: Path) -> None:
    path = toml(tmp_path, '[notices]\nlog = "notices.log"\n')
    with connect("memory://", config=path, environ={}) as mc:
        assert isinstance(mc.command_centre, LogCommandCentre)
        assert mc.command_centre.path == tmp_path / "notices.log"


def test_the_log_adapter_writes_one_masked_line_per_notice(tmp_path: Path) -> None:
    log = LogCommandCentre(tmp_path / "n.log", clock=ManualClock())
    log.notify("c1:5:notify_110", "114 挪车转警 苏D12345", "车主 13912345678 拒绝\n挪车\r\n伪造行")
    log.notify("c2:5:notify_110", "转警", "第二条")
    lines = (tmp_path / "n.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert "key=c1:5:notify_110" in lines[0] and "139******78" in lines[0]
    assert "13912345678" not in lines[0] and "拒绝 挪车 伪造行" in lines[0]
    assert lines[0].startswith("2024-04-01T08:00:00+08:00 110-notice ")
    with pytest.raises(PortError, match="cannot write"):
        LogCommandCentre(tmp_path / "missing" / "n.log").notify("k", "s", "m")
    with pytest.raises(InvalidInput):
        log.notify("bad key", "s", "m")


def test_the_log_adapter_to_a_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="movecar.notices"):
        LogCommandCentre(clock=ManualClock()).notify("k:1", "转警", "求助人 0519-86601234")
    [record] = caplog.records
    assert "key=k:1" in record.getMessage() and "86601234" not in record.getMessage()
