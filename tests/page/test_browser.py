"""The simulator page in a real browser: Debian Chromium driven by Playwright against the ASGI app
served by Daphne in a subprocess (pytest-django's live_server is WSGI only: no WebSocket).

Each test saves screenshots (1366×768) in its tmp_path.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, missing_peer

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "browser-test-password-1"


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """Daphne serving yeeter.asgi on a free loopback port, on the test database."""
    port = free_port()
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with django_db_blocker.unblock():
        url = _database_url()
    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url,
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "YEETER_PIXEL_WORKERS": "1",
           # the scale-out pass: the page's runs go to this session's workers, events over its Redis layer
           "YEETER_CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE}
    if not settings.CELERY_BROKER_URL:
        env.pop("REDIS_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                    "yeeter.asgi:application"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"daphne did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def engineer(catalog_tx, django_user_model):
    return django_user_model.objects.create_user("engineer", password=PASSWORD)


@pytest.fixture
def page(engineer):
    """A Chromium tab; set up after the database fixtures (Playwright's sync API runs an event loop,
    inside which the ORM may not be used) and closed before they are torn down."""
    if not os.path.exists(CHROMIUM):
        missing_peer(f"{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            tab = browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.js_errors = errors
            yield tab
        finally:
            browser.close()


def _log_in(page, base: str, path: str = "/simulator/") -> None:
    page.goto(base + path)
    assert "/accounts/login/" in page.url  # login required
    # By keyboard alone: the user name has the focus, Tab reaches the password, Enter logs in. Typing
    # waits for the autofocus to land (keys typed before it are lost), and the wait for the page behind
    # the login must not match the login page's own "?next=/simulator/..." address.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    page.keyboard.type("engineer")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/simulator/" in url and "/accounts/login/" not in url)


def _launch(page, *, patients: int, concurrency: int | None = None) -> str:
    page.fill("#id_patients", str(patients))
    if concurrency:
        page.fill("#id_concurrency", str(concurrency))
    page.fill("#id_max_instances_per_series", "2")
    page.click("button:has-text('Start the run')")
    page.wait_for_url(re.compile(r"/simulator/runs/[0-9a-f-]{36}/$"))
    return page.url


def _snapshot(page) -> dict:
    return page.evaluate("""() => ({
        passed: Number(document.querySelector('[data-c="passed"]').textContent),
        ok: document.querySelectorAll('#patients .st-ok').length,
        running: document.querySelectorAll('#patients .st-running').length,
        events: document.querySelectorAll('#events tr').length,
        connection: document.querySelector('#connection').textContent,
    })""")


def test_an_engineer_launches_a_run_watches_it_live_and_reads_a_patient_story(asgi_server, page, tmp_path):
    base = asgi_server
    _log_in(page, base)
    page.select_option("#f-modality", "MR")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"modality=MR"))
    modalities = page.locator("table.exams tbody tr td:nth-child(2)").all_inner_texts()
    assert modalities == ["MR", "MR"]
    assert page.locator("table.exams tbody tr").count() == 2
    page.screenshot(path=tmp_path / "catalog.png")

    page.click('a[aria-label="Pin MR-KNEE-RIGHT-WO"]')
    assert page.input_value("#id_exam_id") == "MR-KNEE-RIGHT-WO"
    assert page.is_checked("#src-exam") and page.is_hidden("#id_scenario")
    run_url = _launch(page, patients=3)

    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.append(_snapshot(page))
        if seen[-1]["passed"] == 3 and page.inner_text("#run-status") == "succeeded":
            break
        time.sleep(0.2)
    page.screenshot(path=tmp_path / "run.png")
    last = seen[-1]
    assert last["passed"] == 3, seen[-5:]
    assert page.inner_text("#run-status") == "succeeded"
    # It changed while we watched: steps went from few to all done, events and counters grew.
    assert min(s["ok"] for s in seen) < last["ok"] and min(s["passed"] for s in seen) < 3
    assert any(s["running"] for s in seen) or min(s["events"] for s in seen) < last["events"]
    assert last["ok"] == 3 * 10 and page.inner_text('[data-c="stored"]') == page.inner_text('[data-c="committed"]')
    assert int(page.inner_text('[data-c="hl7"]')) == 9 and page.inner_text('[data-c="acked"]') == "9"
    event_rows = page.locator("#events tr").count()
    page.select_option("#ev-patient", "2")
    assert 0 < page.locator("#events tr").count() < event_rows
    page.check("#ev-errors")
    assert page.locator("#events tr").count() == 0
    assert page.js_errors == []

    page.click('#patients tr[data-patient="1"] a')
    page.wait_for_url(re.compile(r"/patients/1/$"))
    order = page.locator("pre.hl7[aria-label='Order (ORM^O01)']")
    segments = order.locator(".segname").all_inner_texts()
    assert segments[:2] == ["MSH", "PID"] and {"ORC", "OBR", "ZDS"} <= set(segments)
    assert order.locator('.fld[title="OBR-4"]').inner_text().startswith("73721^")
    preview = page.locator("#series img").first
    preview.scroll_into_view_if_needed()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", preview.element_handle())
    rows = page.locator("table.verification tbody tr")
    assert rows.count() > 20 and page.locator("table.verification tr.mismatch").count() == 0
    assert set(page.locator("table.verification tbody td:last-child").all_inner_texts()) == {"ok"}
    page.screenshot(path=tmp_path / "story.png")
    page.locator("#verification").scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "story-verification.png")
    assert run_url in page.locator("nav.crumbs a").nth(1).evaluate("a => a.href")


def _ranges(numbers):
    """[2, 3, 4, 7] as the page writes it: "2–4, 7"."""
    out, start = [], numbers[0]
    for prev, n in zip(numbers, numbers[1:] + [None]):
        if n != prev + 1:
            out.append(str(start) if start == prev else f"{start}–{prev}")
            start = n
    return ", ".join(out)


def test_an_engineer_cancels_a_second_run_from_its_page(asgi_server, page, tmp_path):
    base = asgi_server
    _log_in(page, base, "/simulator/launch/?source=exam&exam_id=DX-CHEST-2V")
    _launch(page, patients=30, concurrency=1)
    page.wait_for_selector("#patients .st-ok", timeout=60000)
    page.click("#cancel-button")
    page.wait_for_function("document.querySelector('#run-status').textContent === 'cancelled'", timeout=60000)
    assert "Cancel requested" in page.inner_text("#action-result")
    assert page.is_hidden("#cancel-form")
    statuses = page.locator("#patients .pstatus .badge").all_inner_texts()
    assert "cancelled" in statuses and "running" not in statuses and "pending" not in statuses
    # The patients that never started are one row and counted cancelled, as the run's summary counts them.
    started = sorted(int(n) for n in page.locator("#patients tr[data-patient]").evaluate_all(
        "rows => rows.map((r) => r.dataset.patient)"))
    missing = [n for n in range(1, 31) if n not in started]
    assert missing, "the cancel came after every patient had started"
    row = page.locator("#patients tr.not-started")
    assert row.locator("td").first.inner_text() == _ranges(missing)
    assert f"{len(missing)} patients never started: cancelled with the run" in row.inner_text()
    counts = {k: int(page.inner_text(f'[data-c="{k}"]')) for k in ("passed", "failed", "inflight", "waiting",
                                                                   "cancelled")}
    assert counts["inflight"] == counts["waiting"] == 0
    assert counts["cancelled"] >= len(missing) and counts["passed"] + counts["failed"] + counts["cancelled"] == 30
    page.screenshot(path=tmp_path / "cancelled.png")
    page.goto(base + "/simulator/runs/")
    assert page.locator("table.runs tbody tr").first.locator(".badge").inner_text() == "Cancelled"
    page.screenshot(path=tmp_path / "history.png")
    # The browser itself sees why a socket is refused (not a bare handshake failure).
    code = page.evaluate("""() => new Promise((done) => {
        const ws = new WebSocket(`ws://${location.host}/ws/runs/not-a-uuid/`);
        ws.onclose = (ev) => done(ev.code);
    })""")
    assert code == 4404
    assert page.js_errors == []


def test_the_arrival_rate_of_a_poisson_run_changes_from_its_page(asgi_server, page, tmp_path):
    base = asgi_server
    _log_in(page, base, "/simulator/launch/?source=scenario&scenario=Hospital+day+mix")
    page.select_option("#id_scenario", "Hospital day mix")
    page.fill("#id_patients", "3")
    page.fill("#id_max_instances_per_series", "1")
    page.click("button:has-text('Start the run')")
    page.wait_for_url(re.compile(r"/simulator/runs/[0-9a-f-]{36}/$"))
    page.wait_for_selector("#patients tr[data-patient='1'] .badge.status-passed", timeout=60000)
    assert page.input_value("#rate") == "60.0"  # the scenario's: about a minute to the next patient
    page.fill("#rate", "360000")
    page.click("#rate-form button")
    page.wait_for_function("document.querySelector('#run-status').textContent === 'succeeded'", timeout=60000)
    assert "Arrival rate set to 360000 patients per hour." in page.inner_text("#action-result")
    assert "Arrival rate changed from 60 to 360000 patients per hour" in page.inner_text("#events")
    assert page.inner_text('[data-c="passed"]') == "3"
    page.screenshot(path=tmp_path / "rate-changed.png")
    assert page.js_errors == []
