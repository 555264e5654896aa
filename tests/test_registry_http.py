"""The owner data source over HTTP (issue 13, 二(二)) against a real platform on 127.0.0.1
that misbehaves on purpose: slow, 500, 429 with Retry-After, a body cut short, not JSON,
the wrong content type, a huge body, an invalid phone, a refused connection; a circuit
breaker on an injected clock; mutual TLS with a throw-away CA."""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_support import (
    KNOWN_PHONE,
    KNOWN_PLATE,
    Pki,
    PlatformServer,
    body,
    cut_short,
    free_port,
    huge_chunked,
    huge_declared,
    running,
    slow,
    status,
    trickle,
)

from movecar_adapters.config import ConfigError
from movecar_adapters.registry import RegistryAnswerInvalid, RegistryCircuitOpen
from movecar_adapters.registry_http import (
    CircuitBreaker,
    HttpVehicleRegistry,
    backoff_delay,
)
from movecar_core import MoveCar
from movecar_core.case import OwnerLookedUp
from movecar_core.clock import ManualClock
from movecar_core.errors import InvalidPlate, RegistryUnavailable
from movecar_core.memory import InMemoryTelephony
from movecar_core.phones import parse_phone
from movecar_core.ports import OwnerContact
from movecar_core.testing.contracts import VehicleRegistryContract


class FakeTime:
    """The adapter's clock and sleep: sleeping advances the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def platform() -> Iterator[PlatformServer]:
    yield from running({KNOWN_PLATE: KNOWN_PHONE})


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


Make = Callable[..., HttpVehicleRegistry]


@pytest.fixture
def make(platform: PlatformServer, fake_time: FakeTime) -> Iterator[Make]:
    made: list[HttpVehicleRegistry] = []

    def build(url: str | None = None, **options: Any) -> HttpVehicleRegistry:
        options.setdefault("timeout_s", 0.5)
        options.setdefault("monotonic", fake_time.monotonic)
        options.setdefault("sleep", fake_time.sleep)
        options.setdefault("random", lambda: 0.5)
        registry = HttpVehicleRegistry(url or platform.url, **options)
        made.append(registry)
        return registry

    yield build
    for registry in made:
        registry.close()


class TestHttpVehicleRegistryContract(VehicleRegistryContract):
    @pytest.fixture
    def registry(self, make: Make) -> HttpVehicleRegistry:
        return make(retries=1)

    @pytest.fixture
    def make_unavailable(self, platform: PlatformServer) -> Callable[[], None]:
        return platform.stop  # nothing listens any more: every connection is refused


# --- the default protocol ------------------------------------------------------------------


def test_the_plate_goes_url_encoded_in_canonical_form(make: Make, platform: PlatformServer) -> None:
    registry = make()
    contact = registry.lookup("苏d 12345")  # as an agent typed it
    assert contact == OwnerContact(phone=KNOWN_PHONE, source="jsjj-test")
    path, headers = platform.requests[-1]
    assert path == "/vehicles/%E8%8B%8FD12345"
    assert headers["Accept"] == "application/json"


def test_a_base_url_prefix_and_a_path_template_with_a_query(
    make: Make, platform: PlatformServer
) -> None:
    platform.default = body({"owner_phone": KNOWN_PHONE})
    registry = make(platform.url + "/api/v2/", path="/query?hphm={plate}&type=02")
    assert registry.lookup(KNOWN_PLATE) == OwnerContact(KNOWN_PHONE, "127.0.0.1")
    assert platform.paths() == ["/api/v2/query?hphm=%E8%8B%8FD12345&type=02"]


def test_unknown_plate_and_a_vehicle_without_phone_are_none(
    make: Make, platform: PlatformServer
) -> None:
    registry = make()
    assert registry.lookup("苏E99999") is None
    platform.then(body({"plate": KNOWN_PLATE, "owner_phone": None}))
    assert registry.lookup(KNOWN_PLATE) is None
    assert registry.breaker.state == "closed"


def test_the_phone_is_canonical_and_the_source_defaults(
    make: Make, platform: PlatformServer
) -> None:
    platform.then(body({"owner_phone": "+86 139-1234-5678"}))
    contact = make(source="jsjj").lookup(KNOWN_PLATE)
    assert contact == OwnerContact(phone=KNOWN_PHONE, source="jsjj")


def test_a_malformed_plate_is_refused_before_anything_is_sent(
    make: Make, platform: PlatformServer
) -> None:
    registry = make()
    for bad in ["", "../../admin", "苏D1234567890", "x" * 10_000, "苏D12345?x=1"]:
        with pytest.raises(InvalidPlate):
            registry.lookup(bad)
    assert platform.requests == []


# --- misbehaving platforms -----------------------------------------------------------------


def test_slow_platform_times_out_and_retries_with_jittered_backoff(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.default = slow(1.5)
    draws = iter([0.0, 1.0])
    registry = make(timeout_s=0.2, retries=2, backoff_s=0.4, random=lambda: next(draws))
    with pytest.raises(RegistryUnavailable, match=r"no answer within 0.2 s") as info:
        registry.lookup(KNOWN_PLATE)
    assert type(info.value) is RegistryUnavailable
    assert len(platform.requests) == 3
    # Attempt 0: ceiling 0.4, draw 0 -> 0.2; attempt 1: ceiling 0.8, draw 1 -> 0.8.
    assert fake_time.slept == [pytest.approx(0.2), pytest.approx(0.8)]


def test_500_is_retried_and_a_later_answer_is_used(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.then(status(500), status(502))
    contact = make(retries=2).lookup(KNOWN_PLATE)
    assert contact is not None and contact.phone == KNOWN_PHONE
    assert len(platform.requests) == 3 and len(fake_time.slept) == 2


def test_500_every_time_gives_up_after_the_retries(make: Make, platform: PlatformServer) -> None:
    platform.default = status(500)
    with pytest.raises(RegistryUnavailable, match="answered 500"):
        make(retries=3).lookup(KNOWN_PLATE)
    assert len(platform.requests) == 4


def test_429_retry_after_seconds_is_honoured(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.then(status(429, {"Retry-After": "3"}))
    assert make(max_retry_after_s=5).lookup(KNOWN_PLATE) is not None
    assert fake_time.slept == [3.0]


def test_503_retry_after_as_a_date_is_read_against_the_platforms_date(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    sent = 1_750_000_000.0
    headers = {
        "Date": email.utils.formatdate(sent, usegmt=True),
        "Retry-After": email.utils.formatdate(sent + 2, usegmt=True),
    }
    platform.then(status(503, headers))
    assert make().lookup(KNOWN_PLATE) is not None
    assert fake_time.slept == [2.0]


def test_429_asking_too_long_a_wait_fails_at_once(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.then(status(429, {"Retry-After": "120"}))
    with pytest.raises(RegistryUnavailable, match="asks to wait 120 s"):
        make(retries=3, max_retry_after_s=5).lookup(KNOWN_PLATE)
    assert len(platform.requests) == 1 and fake_time.slept == []


def test_429_without_retry_after_backs_off(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.then(status(429))
    assert make(backoff_s=1.0).lookup(KNOWN_PLATE) is not None
    assert fake_time.slept == [pytest.approx(0.75)]  # ceiling 1.0, draw 0.5


def test_truncated_json_is_an_invalid_answer_not_retried(
    make: Make, platform: PlatformServer
) -> None:
    platform.default = body(b'{"plate": "\xe8\x8b\x8fD12345", "owner_phone": "1391234')
    with pytest.raises(RegistryAnswerInvalid, match="not JSON") as info:
        make(retries=2).lookup(KNOWN_PLATE)
    assert "1391234" not in str(info.value)
    assert len(platform.requests) == 1


def test_a_body_cut_short_on_the_wire_is_retried(make: Make, platform: PlatformServer) -> None:
    platform.then(cut_short)
    contact = make(retries=1).lookup(KNOWN_PLATE)
    assert contact is not None
    platform.default = cut_short
    with pytest.raises(RegistryUnavailable, match="cannot reach the platform"):
        make(retries=1).lookup(KNOWN_PLATE)


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("text/html", "content type is 'text/html'"),
        (None, "content type is ''"),
        ("application/json; charset=gbk", "charset is 'gbk'"),
    ],
)
def test_the_wrong_content_type_is_an_invalid_answer(
    make: Make, platform: PlatformServer, content_type: str | None, says: str
) -> None:
    platform.default = body({"owner_phone": KNOWN_PHONE}, content_type=content_type)
    with pytest.raises(RegistryAnswerInvalid, match=says):
        make().lookup(KNOWN_PLATE)


def test_json_with_a_utf8_charset_is_fine(make: Make, platform: PlatformServer) -> None:
    platform.default = body({"owner_phone": KNOWN_PHONE}, "Application/JSON; charset=UTF-8")
    assert make().lookup(KNOWN_PLATE) is not None


@pytest.mark.parametrize(
    "phone", ["1391234567", "139123456789", "12912345678", "110", "+1 555 0100", "13912345678x"]
)
def test_an_invalid_phone_is_an_invalid_answer_without_the_number(
    make: Make, platform: PlatformServer, phone: str
) -> None:
    platform.default = body({"plate": KNOWN_PLATE, "owner_phone": phone})
    registry = make(breaker_failures=1)
    with pytest.raises(RegistryAnswerInvalid, match="not a phone number") as info:
        registry.lookup(KNOWN_PLATE)
    digits = "".join(c for c in phone if c.isdigit())
    assert digits not in "".join(c for c in str(info.value) if c.isdigit()) or len(digits) < 4
    # The platform answered: it is up, so the breaker stays closed, and nothing is retried.
    assert registry.breaker.state == "closed"
    assert len(platform.requests) == 1


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ([KNOWN_PHONE], "JSON array, not an object"),
        ({"plate": "苏E99999", "owner_phone": KNOWN_PHONE}, "another plate"),
        ({"plate": 7, "owner_phone": KNOWN_PHONE}, "another plate"),
        ({"phone": KNOWN_PHONE}, "no owner_phone"),
        ({"owner_phone": 13912345678}, "JSON number, not a string"),
        ({"owner_phone": KNOWN_PHONE, "source": "a\nb"}, "line break"),
        ({"owner_phone": KNOWN_PHONE, "source": "x" * 101}, "longer than 100"),
    ],
)
def test_answers_of_another_shape_are_refused(
    make: Make, platform: PlatformServer, answer: Any, says: str
) -> None:
    platform.default = body(answer)
    with pytest.raises(RegistryAnswerInvalid, match=says) as info:
        make().lookup(KNOWN_PLATE)
    assert KNOWN_PHONE not in str(info.value)


def test_an_object_with_a_key_twice_is_ambiguous(make: Make, platform: PlatformServer) -> None:
    platform.default = body(b'{"owner_phone": "13912345678", "owner_phone": "13800001111"}')
    with pytest.raises(RegistryAnswerInvalid, match="twice"):
        make().lookup(KNOWN_PLATE)


def test_deeply_nested_json_is_refused(make: Make, platform: PlatformServer) -> None:
    platform.default = body(b"[" * 50_000 + b"]" * 50_000)
    with pytest.raises(RegistryAnswerInvalid):
        make(max_body_bytes=200_000).lookup(KNOWN_PLATE)


@pytest.mark.parametrize("behaviour", [huge_declared, huge_chunked])
def test_a_huge_body_is_refused_without_reading_it(
    make: Make, platform: PlatformServer, behaviour: Any
) -> None:
    platform.default = behaviour
    with pytest.raises(RegistryAnswerInvalid, match="larger than 65536 bytes"):
        make(retries=0).lookup(KNOWN_PLATE)


def test_an_answer_trickling_in_is_cut_off_at_the_timeout(
    platform: PlatformServer,
) -> None:
    """Each byte comes before the read timeout; the whole body does not come in time."""
    platform.default = trickle(0.05)
    registry = HttpVehicleRegistry(platform.url, timeout_s=0.3, retries=0)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=r"took longer than 0\.3 s"):
        registry.lookup(KNOWN_PLATE)
    assert time.monotonic() - started < 1.5
    registry.close()


def test_seats_look_up_at_the_same_time(make: Make, platform: PlatformServer) -> None:
    registry = make(retries=0)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: registry.lookup(KNOWN_PLATE), range(40)))
    assert found == [OwnerContact(KNOWN_PHONE, "jsjj-test")] * 40
    assert len(platform.requests) == 40


def test_a_connection_refused_is_unavailable(make: Make, fake_time: FakeTime) -> None:
    registry = make(f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(RegistryUnavailable, match=r"cannot reach the platform.*refused") as info:
        registry.lookup(KNOWN_PLATE)
    assert type(info.value) is RegistryUnavailable
    assert len(fake_time.slept) == 2


@pytest.mark.parametrize("code", [401, 403, 400, 302])
def test_other_statuses_are_not_retried(make: Make, platform: PlatformServer, code: int) -> None:
    platform.default = status(code, {"Location": "http://elsewhere/"})
    registry = make(retries=3)
    with pytest.raises(RegistryUnavailable, match=f"answered {code}"):
        registry.lookup(KNOWN_PLATE)
    assert len(platform.requests) == 1
    assert registry.breaker.state == "closed"


# --- the mapping hook ----------------------------------------------------------------------


def test_a_mapping_hook_reads_another_platforms_shape(make: Make, platform: PlatformServer) -> None:
    """A platform that wraps its answers: {"code": 0, "data": {"hphm": ..., "sjhm": ...}}."""

    def jsjj(plate: str, data: Any) -> OwnerContact | None:
        if data["code"] == 1004:  # 无此车辆
            return None
        record = data["data"]
        if record["hphm"] != plate:
            raise ValueError("another plate")
        return OwnerContact(phone=record["sjhm"], source="")

    registry = make(mapping=jsjj, path="/api/clxx/{plate}", source="江苏交警")
    platform.then(body({"code": 0, "data": {"hphm": KNOWN_PLATE, "sjhm": "139 1234 5678"}}))
    assert registry.lookup(KNOWN_PLATE) == OwnerContact(KNOWN_PHONE, "江苏交警")
    platform.then(body({"code": 1004, "data": None}))
    assert registry.lookup(KNOWN_PLATE) is None
    platform.then(body({"code": 0}))
    with pytest.raises(RegistryAnswerInvalid, match=r"mapping refused the answer \(KeyError\)"):
        registry.lookup(KNOWN_PLATE)
    platform.then(body({"code": 0, "data": {"hphm": KNOWN_PLATE, "sjhm": "0519-110"}}))
    with pytest.raises(RegistryAnswerInvalid, match="not a phone number"):
        registry.lookup(KNOWN_PLATE)


def test_a_mapping_returning_something_else_is_refused(make: Make) -> None:
    registry = make(mapping=lambda plate, data: {"phone": KNOWN_PHONE})
    with pytest.raises(RegistryAnswerInvalid, match="returned dict"):
        registry.lookup(KNOWN_PLATE)


# --- the circuit breaker -------------------------------------------------------------------


def test_the_breaker_opens_fails_fast_and_probes_after_the_cool_down(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.default = status(500)
    registry = make(retries=0, breaker_failures=3, breaker_cooldown_s=30)
    for _ in range(3):
        with pytest.raises(RegistryUnavailable, match="answered 500"):
            registry.lookup(KNOWN_PLATE)
    assert registry.breaker.state == "open"
    with pytest.raises(RegistryCircuitOpen, match=r"not asked again for 30.0 s"):
        registry.lookup(KNOWN_PLATE)
    assert len(platform.requests) == 3  # failing fast sends nothing
    fake_time.now += 29
    with pytest.raises(RegistryCircuitOpen):
        registry.lookup(KNOWN_PLATE)
    fake_time.now += 1
    assert registry.breaker.state == "half-open"
    with pytest.raises(RegistryUnavailable, match="answered 500"):  # the probe fails
        registry.lookup(KNOWN_PLATE)
    assert registry.breaker.state == "open" and len(platform.requests) == 4
    fake_time.now += 30
    platform.default = slow(0)  # the platform is back
    assert registry.lookup(KNOWN_PLATE) is not None
    assert registry.breaker.state == "closed"
    assert registry.breaker.consecutive_failures == 0


def test_retries_stop_when_the_breaker_opens(
    make: Make, platform: PlatformServer, fake_time: FakeTime
) -> None:
    platform.default = status(503)
    registry = make(retries=5, breaker_failures=2)
    with pytest.raises(RegistryCircuitOpen):
        registry.lookup(KNOWN_PLATE)
    assert len(platform.requests) == 2 and len(fake_time.slept) == 2


def test_a_success_resets_the_count(make: Make, platform: PlatformServer) -> None:
    registry = make(retries=0, breaker_failures=2)
    for _ in range(3):
        platform.then(status(500))
        with pytest.raises(RegistryUnavailable):
            registry.lookup(KNOWN_PLATE)
        assert registry.lookup(KNOWN_PLATE) is not None
    assert registry.breaker.state == "closed"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    failures=st.integers(1, 5),
    cooldown=st.floats(0.5, 100),
    steps=st.lists(st.tuples(st.booleans(), st.floats(0, 60)), max_size=60),
)
def test_breaker_for_any_history(
    failures: int, cooldown: float, steps: list[tuple[bool, float]]
) -> None:
    """For every sequence of outcomes and pauses: an attempt goes through exactly when the
    breaker is closed or cooled down; it opens after ``failures`` failures in a row; while
    open and not cooled down, nothing is let through."""
    clock = Clock()
    breaker = CircuitBreaker(failures, cooldown, clock)
    in_a_row = 0
    opened_at: float | None = None
    for ok, pause in steps:
        clock.now += pause
        cooled = opened_at is None or clock.now - opened_at >= cooldown
        try:
            breaker.before()
            allowed = True
        except RegistryCircuitOpen:
            allowed = False
        assert allowed == cooled
        if not allowed:
            continue
        breaker.record(ok)
        if ok:
            in_a_row, opened_at = 0, None
        else:
            in_a_row += 1
            if opened_at is not None or in_a_row >= failures:
                opened_at = clock.now
        assert (breaker.state == "closed") == (opened_at is None)


def test_one_probe_at_a_time_in_half_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, clock)
    breaker.before()
    breaker.record(False)
    clock.now = 10
    breaker.before()  # the probe
    with pytest.raises(RegistryCircuitOpen):
        breaker.before()  # a second caller while the probe is out
    breaker.record(True)
    breaker.before()


def test_a_clock_that_goes_backwards_does_not_keep_the_breaker_open() -> None:
    clock = Clock()
    clock.now = 100
    breaker = CircuitBreaker(1, 10, clock)
    breaker.before()
    breaker.record(False)
    clock.now = 50
    breaker.before()


@settings(max_examples=300)
@given(
    attempt=st.integers(0, 2000),
    base=st.floats(0, 60),
    cap=st.floats(0, 600),
    draw=st.floats(allow_nan=True, allow_infinity=True),
)
def test_backoff_is_between_half_and_all_of_its_ceiling(
    attempt: int, base: float, cap: float, draw: float
) -> None:
    ceiling = min(cap, base * 2.0**attempt) if attempt < 1024 else cap
    delay = backoff_delay(attempt, base, cap, draw)
    assert ceiling / 2 <= delay <= ceiling <= cap


# --- any answer at all ---------------------------------------------------------------------

PLANTED = "13987654321"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    code=st.sampled_from([200, 200, 200, 204, 301, 400, 404, 429, 500, 503]),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=latin-1"]
    ),
    data=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.just(PLANTED),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["plate", "owner_phone", "source", "x"]), inner, max_size=4
                )
            ),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    retry_after=st.sampled_from([None, "1", "999", "soon", "-3"]),
)
def test_any_answer_is_a_valid_contact_none_or_a_typed_error(
    code: int, content_type: str, data: bytes, retry_after: str | None
) -> None:
    """Whatever the platform sends, the adapter hands back a contact whose phone is
    canonical, None, or RegistryUnavailable whose message does not hold the phone."""

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return httpx.Response(code, headers=headers, content=data)

    slept: list[float] = []
    registry = HttpVehicleRegistry(
        "https://platform.test",
        transport=httpx.MockTransport(answer),
        retries=1,
        sleep=slept.append,
        random=lambda: 0.3,
    )
    failed: RegistryUnavailable | None = None
    contact = None
    try:
        contact = registry.lookup(KNOWN_PLATE)
    except RegistryUnavailable as exc:
        failed = exc
    finally:
        registry.close()
    if failed is not None:
        assert PLANTED not in str(failed) and len(str(failed)) < 300
    elif contact is not None:
        assert parse_phone(contact.phone).canonical == contact.phone
        assert 0 < len(contact.source) <= 100
    assert all(0 <= s <= 5 for s in slept)


# --- mutual TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_platform(pki: Pki) -> Iterator[PlatformServer]:
    yield from running({KNOWN_PLATE: KNOWN_PHONE}, tls=pki.server_context())


def test_mutual_tls_with_the_client_certificate(
    make: Make, tls_platform: PlatformServer, pki: Pki
) -> None:
    registry = make(
        tls_platform.url,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        ca_bundle=pki.ca,
    )
    assert registry.lookup(KNOWN_PLATE) == OwnerContact(KNOWN_PHONE, "jsjj-test")


def test_without_a_client_certificate_the_platform_refuses(
    make: Make, tls_platform: PlatformServer, pki: Pki
) -> None:
    registry = make(tls_platform.url, ca_bundle=pki.ca, retries=0)
    with pytest.raises(RegistryUnavailable, match="cannot reach the platform"):
        registry.lookup(KNOWN_PLATE)
    assert tls_platform.requests == []


def test_a_platform_certificate_from_another_ca_is_refused(
    make: Make, tls_platform: PlatformServer, pki: Pki, tmp_path: Path
) -> None:
    other = Pki(tmp_path, name="other")
    registry = make(
        tls_platform.url,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        ca_bundle=other.ca,
        retries=0,
    )
    with pytest.raises(RegistryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        registry.lookup(KNOWN_PLATE)
    assert tls_platform.requests == []


def test_a_client_certificate_from_another_ca_is_refused(
    make: Make, tls_platform: PlatformServer, pki: Pki, tmp_path: Path
) -> None:
    other = Pki(tmp_path, name="other")
    registry = make(
        tls_platform.url,
        client_cert=other.client_cert,
        client_key=other.client_key,
        ca_bundle=pki.ca,
        retries=0,
    )
    with pytest.raises(RegistryUnavailable):
        registry.lookup(KNOWN_PLATE)
    assert tls_platform.requests == []


def test_tls_files_that_cannot_be_used_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    url = "https://platform.test"
    with pytest.raises(ConfigError, match=r"client_cert .*cannot read it"):
        HttpVehicleRegistry(url, client_cert=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"client_cert .*not usable"):
        HttpVehicleRegistry(url, client_cert=pki.client_cert, client_key=pki.server_key)
    with pytest.raises(ConfigError, match="ca_bundle"):
        HttpVehicleRegistry(url, ca_bundle=tmp_path / "missing-ca.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_bundle"):
        HttpVehicleRegistry(url, ca_bundle=garbage)
    with pytest.raises(ConfigError, match="client_key given without client_cert"):
        HttpVehicleRegistry(url, client_key=pki.client_key)
    with pytest.raises(ConfigError, match="https"):
        HttpVehicleRegistry("http://platform.test", ca_bundle=pki.ca)


def test_the_tls_context_reaches_httpx(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = httpx.Client.__init__

    def spy(self: httpx.Client, **kwargs: Any) -> None:
        seen.update(kwargs)
        real(self, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", spy)
    HttpVehicleRegistry(
        "https://platform.test", client_cert=pki.client_cert, client_key=pki.client_key
    ).close()
    assert isinstance(seen["verify"], ssl.SSLContext)
    assert seen["verify"].verify_mode == ssl.CERT_REQUIRED
    assert seen["trust_env"] is False and seen["follow_redirects"] is False


# --- hostile options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("", {}, "base URL"),
        ("ftp://platform.test", {}, "http"),
        ("https://user:secret@platform.test", {}, "no credentials"),
        ("https://platform.test?x=1", {}, "no query"),
        ("https://platform.test:99999", {}, "not a URL"),
        ("https://platform.test", {"timeout_s": 0}, "timeout_s"),
        ("https://platform.test", {"timeout_s": float("nan")}, "timeout_s"),
        ("https://platform.test", {"retries": -1}, "retries"),
        ("https://platform.test", {"retries": True}, "retries"),
        ("https://platform.test", {"retries": 11}, "retries"),
        ("https://platform.test", {"breaker_failures": 0}, "breaker_failures"),
        ("https://platform.test", {"breaker_cooldown_s": -1}, "breaker_cooldown_s"),
        ("https://platform.test", {"max_body_bytes": 10}, "max_body_bytes"),
        ("https://platform.test", {"path": "vehicles/{plate}"}, "path"),
        ("https://platform.test", {"path": "/vehicles"}, "path"),
        ("https://platform.test", {"path": "/{plate}/{plate}"}, "path"),
        ("https://platform.test", {"path": "/{plate}/{x}"}, "path"),
        ("https://platform.test", {"source": ""}, "source"),
        ("https://platform.test", {"headers": {"X-Token": "a\r\nb"}}, "line break"),
        ("https://platform.test", {"headers": {"Bad Name": "x"}}, "header name"),
    ],
)
def test_bad_options_are_config_errors(url: str, options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        HttpVehicleRegistry(url, **options)
    assert "secret" not in str(info.value)


def test_headers_are_sent(make: Make, platform: PlatformServer) -> None:
    make(headers={"X-Api-Token": "t0ken"}).lookup(KNOWN_PLATE)
    assert platform.requests[-1][1]["X-Api-Token"] == "t0ken"
    assert "t0ken" not in repr(make(headers={"X-Api-Token": "t0ken"}))


# --- the engine on the adapter -------------------------------------------------------------


def test_the_engine_looks_owners_up_through_the_platform(
    make: Make, platform: PlatformServer
) -> None:
    registry = make(retries=0)
    mc = MoveCar(
        store=MoveCar.in_memory().store,
        registry=registry,
        telephony=InMemoryTelephony(),
        clock=ManualClock(),
    )
    case_id = mc.open_case(plate="苏D12345", location="湖塘镇", requester_phone="13800001111")
    mc.locate_owner(case_id, agent_id="seat-1")
    looked = [e for e in mc.store.load(case_id) if isinstance(e, OwnerLookedUp)]
    assert [(e.found, e.owner_phone, e.source) for e in looked] == [
        (True, KNOWN_PHONE, "jsjj-test")
    ]
    other = mc.open_case(plate="苏D54321", location="湖塘镇", requester_phone="13800001111")
    platform.default = status(500)
    with pytest.raises(RegistryUnavailable):
        mc.locate_owner(other, agent_id="seat-1")
    assert not any(isinstance(e, OwnerLookedUp) for e in mc.store.load(other))
