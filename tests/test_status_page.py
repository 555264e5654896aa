"""The status page in a real browser: Debian's headless Chromium, driven through
Playwright's Python API, reads the page from a real uvicorn server on 127.0.0.1 serving
the route over an engine on a SQLite file.

Playwright's own browsers are never downloaded: the test launches the system browser
(``/usr/bin/chromium``, or ``$MOVECAR_TEST_CHROMIUM``). Without it or without Playwright
the test skips, saying which, except in CI (``CI=true``), where that is a failure. The
screenshot is kept in ``$MOVECAR_TEST_ARTIFACTS`` (default ``test-artifacts/``, ignored by
git) as ``status-page.png``; the test prints its path.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from movecar_adapters.connect import connect
from movecar_adapters.crypto import KeyRing
from movecar_adapters.http.status import TITLE, status_route
from movecar_core.app import MoveCar
from movecar_core.calendar import SHANGHAI
from movecar_core.clock import ManualClock
from movecar_core.memory import InMemoryVehicleRegistry

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2025, 3, 14, 9, 0, tzinfo=SHANGHAI)
#: A full mainland mobile number or fixed line, digits only or with the area code's dash.
FULL_NUMBER = re.compile(r"(?<![0-9])(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[2-9][0-9]{6,7})(?![0-9])")
CASES = (  # plate, requester, owner found?
    ("苏D12345", "13800001111", True),
    ("苏E54321", "13800002222", False),
    ("浙A1234学", "0519-81997327", False),
)
CLOSED = ("苏A11111", "13800003333")
OWNER = "13912345678"
SERVER_START_TIMEOUT = 10.0


def _chromium() -> str | None:
    named = os.environ.get("MOVECAR_TEST_CHROMIUM")
    for candidate in (named, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing(what: str) -> None:
    """CI must have the browser: there a missing tool fails; elsewhere the test skips."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture
def chromium() -> str:
    path = _chromium()
    if path is None:
        _missing("no system Chromium (apt-get install chromium, or set MOVECAR_TEST_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    assert path is not None
    return path


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[MoveCar]:
    """An engine on a SQLite file: three open cases (one with its owner found) and a
    cancelled one, at 09:00 Asia/Shanghai."""
    clock = ManualClock(T0 - dt.timedelta(minutes=45))
    registry = InMemoryVehicleRegistry({plate: OWNER for plate, _, _ in CASES})
    keys = KeyRing([("k1", KeyRing.generate())])
    url = f"sqlite:///{tmp_path / 'status.db'}"
    with connect(url, keys=keys, clock=clock, registry=registry, environ={}) as mc:
        for plate, phone, locate in CASES:
            case_id = mc.open_case(plate=plate, location="花园街 8 号", requester_phone=phone)
            if locate:
                mc.locate_owner(case_id)
            clock.advance(dt.timedelta(minutes=10))
        closed = mc.open_case(plate=CLOSED[0], location="x", requester_phone=CLOSED[1])
        mc.cancel(closed, note="车已开走")
        clock.set(T0)
        yield mc
        store: Any = mc.store
    store.engine.dispose()


@pytest.fixture
def server(engine: MoveCar) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread, serving the route."""
    import uvicorn
    from starlette.applications import Starlette

    app = Starlette(routes=[status_route(lambda request: engine)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the port is ours before the server starts
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    # Readiness: uvicorn sets `started` once it listens; the thread's death is a failure.
    while not srv.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        thread.join(0.01)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(SERVER_START_TIMEOUT)
        sock.close()


def _artifacts() -> Path:
    folder = Path(os.environ.get("MOVECAR_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_status_page_in_chromium(chromium: str, server: str, engine: MoveCar) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            response = page.goto(server, wait_until="load")
            assert response is not None and response.status == 200
            headers = response.headers
            assert headers["content-type"].startswith("text/html")
            assert "default-src 'none'" in headers["content-security-policy"]
            assert headers["cache-control"] == "no-store"

            assert page.title() == TITLE
            state = "#open-counts tr[data-state='{}'] td"
            assert page.locator(state.format("received")).inner_text() == "2"
            assert page.locator(state.format("owner_located")).inner_text() == "1"
            assert page.locator(state.format("owner_called")).inner_text() == "0"
            assert page.locator("#card-open .figure").inner_text() == "3"
            assert page.locator("#card-today .figure").inner_text() == "4"

            rows = page.locator("#open-cases-table tbody tr")
            assert rows.count() == len(CASES)
            cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
            assert [c[1:3] for c in cells] == [
                ["苏D***45", "138****1111"],
                ["苏E***21", "138****2222"],
                ["浙A***4学", "0519-****7327"],
            ]
            assert cells[0][3].startswith("已查到车主")
            opened = ["2025-03-14 08:15", "2025-03-14 08:25", "2025-03-14 08:35"]
            assert [c[4] for c in cells] == opened
            assert [c[5] for c in cells] == ["45 min", "35 min", "25 min"]
            # The inline CSS applied: allowed by its hash, not blocked by the policy.
            background = page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor")
            assert background == "rgb(18, 58, 107)"

            text = page.locator("body").inner_text()
            for plate, phone, _ in (*CASES, (*CLOSED, False)):
                assert plate not in text and phone not in text
                assert phone.replace("-", "") not in text
            assert OWNER not in text
            for c in cells:
                text = text.replace(c[0], "")  # a case id is hex: its digits may look like one
            assert FULL_NUMBER.search(text) is None

            shot = _artifacts() / "status-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"status page screenshot: {shot}")
            assert shot.stat().st_size > 0
        finally:
            browser.close()
    assert errors == [], f"console errors: {errors}"
