"""connect() chooses the owner data source from ``[registry]`` or ``$MOVECAR_REGISTRY_URL``
(issue 13, 二(二)); bad settings are ConfigErrors naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_support import KNOWN_PHONE, KNOWN_PLATE, Pki, PlatformServer, running

from movecar_adapters import connect
from movecar_adapters.config import ConfigError, RegistrySettings, load_settings
from movecar_adapters.registry_http import HttpVehicleRegistry
from movecar_core.case import OwnerLookedUp
from movecar_core.memory import InMemoryVehicleRegistry


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "movecar.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def platform() -> Iterator[PlatformServer]:
    yield from running({KNOWN_PLATE: KNOWN_PHONE})


def test_the_file_names_the_platform_and_its_options(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
[registry]
kind = "http"
url = "https://jsjj.internal/api"
timeout_s = 1.5
retries = 1
path = "/query?hphm={plate}"
breaker_failures = 3
client_cert = "tls/client.pem"
client_key = "/etc/movecar/client.key"
""",
    )
    settings = load_settings(path, environ={})
    assert settings.registry == RegistrySettings(
        kind="http",
        url="https://jsjj.internal/api",
        options={
            "timeout_s": 1.5,
            "retries": 1,
            "path": "/query?hphm={plate}",
            "breaker_failures": 3,
            "client_cert": tmp_path / "tls" / "client.pem",
            "client_key": Path("/etc/movecar/client.key"),
        },
    )


def test_the_environment_url_implies_the_kind() -> None:
    http = load_settings(None, environ={"MOVECAR_REGISTRY_URL": "https://p.internal"})
    assert http.registry == RegistrySettings("http", "https://p.internal")
    sql = load_settings(None, environ={"MOVECAR_REGISTRY_URL": "sqlite:///mirror.db"})
    assert sql.registry == RegistrySettings("sql", "sqlite:///mirror.db")
    assert load_settings(None, environ={}).registry is None


def test_the_environment_url_overrides_the_files(tmp_path: Path) -> None:
    path = _config(tmp_path, '[registry]\nurl = "https://a.internal"\nretries = 0\n')
    settings = load_settings(path, environ={"MOVECAR_REGISTRY_URL": "https://b.internal"})
    assert settings.registry == RegistrySettings("http", "https://b.internal", {"retries": 0})


@pytest.mark.parametrize(
    ("text", "env", "says"),
    [
        ('[registry]\nkind = "ldap"\n', {}, "must be 'memory', 'http' or 'sql'"),
        ('[registry]\nkind = "http"\n', {}, "needs an http"),
        ('[registry]\nkind = "http"\nurl = "sqlite:///x.db"\n', {}, "needs an http"),
        ('[registry]\nkind = "sql"\nurl = "https://x"\n', {}, "database URL"),
        ('[registry]\nkind = "sql"\nretries = 2\n', {}, "registry.retries is not a setting"),
        ('[registry]\nurl = "https://x"\ntable = "t"\n', {}, "registry.table is not a setting"),
        ("[registry]\ntimeout_s = 2\n", {}, "without kind or url"),
        ('[registry]\nkind = "memory"\n', {"MOVECAR_REGISTRY_URL": "https://x"}, "kind='memory'"),
        ('[registry]\nretries = "2"\n', {}, "registry.retries must be int"),
        ('[registry]\nurl = "https://x"\ncolour = "red"\n', {}, "unknown setting registry.colour"),
    ],
)
def test_bad_registry_settings_are_config_errors(
    tmp_path: Path, text: str, env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(_config(tmp_path, text), environ=env)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('url = "https://x"\nretries = 99\n', "retries=99"),
        ('url = "https://x"\ntimeout_s = 0\n', "timeout_s=0"),
        ('url = "https://x"\npath = "/no-plate"\n', "registry path"),
        ('url = "https://user:pw@x"\n', "no credentials"),
        ('url = "https://x"\nclient_cert = "missing.pem"\n', "client_cert"),
        ('url = "http://x"\nca_bundle = "ca.pem"\n', "https"),
        ('kind = "sql"\n', "in-memory store"),
    ],
)
def test_values_the_adapter_refuses_are_config_errors_from_connect(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _config(tmp_path, "[registry]\n" + text)
    with pytest.raises(ConfigError, match=says) as info:
        connect("memory://", config=path, environ={})
    assert "pw" not in str(info.value)


def test_connect_looks_owners_up_on_the_configured_platform(
    platform: PlatformServer, tmp_path: Path
) -> None:
    path = _config(tmp_path, '[registry]\nretries = 0\nsource = "jsjj"\n')
    env = {"MOVECAR_REGISTRY_URL": platform.url}
    with connect("memory://", config=path, environ=env) as mc:
        assert isinstance(mc.registry, HttpVehicleRegistry)
        assert mc.registry.retries == 0
        case_id = mc.open_case(plate=KNOWN_PLATE, location="湖塘镇", requester_phone="13800001111")
        mc.locate_owner(case_id, agent_id="seat-1")
        looked = [e for e in mc.store.load(case_id) if isinstance(e, OwnerLookedUp)]
        # The platform names its source in the answer; the configured one is the fallback.
        assert [(e.owner_phone, e.source) for e in looked] == [(KNOWN_PHONE, "jsjj-test")]
    assert platform.paths() == ["/vehicles/%E8%8B%8FD12345"]


def test_connect_with_mutual_tls_from_the_file(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    for server in running({KNOWN_PLATE: KNOWN_PHONE}, tls=pki.server_context()):
        path = _config(
            tmp_path,
            f"""
[registry]
url = "{server.url}"
client_cert = "{pki.client_cert.name}"
client_key = "{pki.client_key.name}"
ca_bundle = "{pki.ca.name}"
""",
        )
        with connect("memory://", config=path, environ={}) as mc:
            assert mc.registry.lookup(KNOWN_PLATE) is not None
        assert len(server.requests) == 1


def test_an_explicit_registry_wins_over_the_settings(tmp_path: Path) -> None:
    given = InMemoryVehicleRegistry()
    env = {"MOVECAR_REGISTRY_URL": "https://p.internal"}
    with connect("memory://", registry=given, environ=env) as mc:
        assert mc.registry is given


def test_without_settings_the_registry_is_in_memory() -> None:
    with connect("memory://", environ={}) as mc:
        assert isinstance(mc.registry, InMemoryVehicleRegistry)
