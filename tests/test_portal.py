"""The portal in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A subject signs in, reads the record and contests an entry; a reviewer signs in and upholds
it; the subject sees the points restored. Every page passes axe-core (from the npm registry,
installed under tests/portal and injected from disk) with no serious or critical violation, at
phone (390x844) and desktop (1280x800) sizes. Screenshots go to docs/img/.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from pointbook.intake import EventIn, RawRecord
from pointbook.ledger import Ledger
from pointbook.rules.pack import load_pack_file
from pointbook.service.app import create_app
from pointbook.service.auth import Principal, hash_token
from pointbook.store import SQLiteStore

ROOT = Path(__file__).parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "portal" / "node_modules" / "axe-core" / "axe.min.js"
IMG = ROOT / "docs" / "img"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require(path: Path, how: str) -> None:
    if path.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{path} is missing: {how}")
    pytest.skip(f"{path} is missing: {how}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("portal") / "portal.db"
    ledger = Ledger(SQLiteStore(db), now=lambda: NOW)
    ledger.publish(load_pack_file(ROOT / "examples" / "packs" / "civic-code.yaml"))
    # civic-code: graffiti -50 and littering -5 from 1000 (the pack's rules) -> 945.
    bodies = [
        {"id": "g1", "type": "graffiti", "occurred_at": "2026-02-03", "evidence": "photo-118"},
        {"id": "l1", "type": "littering", "occurred_at": "2026-03-10", "evidence": "warden-41"},
    ]
    ledger.ingest(
        [
            RawRecord(
                i,
                "",
                EventIn.model_validate({**b, "domain": "civic-code", "subject": "resident-7"}),
                None,
            )
            for i, b in enumerate(bodies, start=1)
        ]
    )
    tokens = {
        hash_token("subject-token"): Principal("subject", "civic-code", "resident-7", "resident-7"),
        hash_token("reviewer-token"): Principal("reviewer", "civic-code", None, "reviewer-ana"),
        hash_token("auditor-token"): Principal("auditor", "civic-code", None, "auditor-jo"),
    }
    app = create_app(ledger, tokens.get, lambda: NOW)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=5)
    ledger.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require(CHROMIUM, "install Debian's chromium package (apt-get install chromium)")
    _require(AXE, "run `npm ci --prefix tests/portal` to install axe-core")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def check_accessibility(page: Any) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], v["help"], len(v["nodes"]))
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{page.url}: {bad}"


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/signin")
    check_accessibility(page)
    page.get_by_label("Access token").fill(token)
    with page.expect_navigation():  # the redirect sets the session cookie: wait for it
        page.get_by_role("button", name="Sign in").click()


def test_public_pages_read_in_plain_words(browser: Any, server: str) -> None:
    for viewport in (PHONE, DESKTOP):
        page = browser.new_page(viewport=viewport)
        page.goto(server + "/")
        check_accessibility(page)
        page.get_by_role("link", name="Civic").first.click()
        assert page.get_by_role("heading", name="What costs or earns points").is_visible()
        assert "Graffiti" in page.content()
        check_accessibility(page)
        page.close()


def test_contest_then_uphold_restores_the_points(browser: Any, server: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    subject = browser.new_page(viewport=PHONE)
    sign_in(subject, server, "subject-token")
    assert subject.url.endswith("/me")
    assert subject.locator("#points").inner_text() == "945"
    check_accessibility(subject)
    subject.screenshot(path=str(IMG / "portal-subject-phone.png"), full_page=True)
    subject.set_viewport_size(DESKTOP)
    check_accessibility(subject)
    subject.screenshot(path=str(IMG / "portal-subject-desktop.png"), full_page=True)

    # Contest the graffiti entry (-50).
    entry = subject.locator("ol.timeline li", has_text="Graffiti")
    entry.locator("summary").click()
    entry.get_by_label("Why is it wrong?").fill(
        "I was abroad that week; the photo shows someone else."
    )
    with subject.expect_navigation():
        entry.get_by_role("button", name="Contest").click()
    assert "appeal was filed" in subject.content()
    # While the appeal is open the contested entry does not count: 945 + 50 = 995.
    assert subject.locator("#points").inner_text() == "995"
    check_accessibility(subject)

    reviewer = browser.new_page(viewport=DESKTOP)
    sign_in(reviewer, server, "reviewer-token")
    assert reviewer.url.endswith("/review")
    assert "I was abroad that week" in reviewer.content()
    assert "photo-118" in reviewer.content()  # the evidence, to decide with full context
    check_accessibility(reviewer)
    reviewer.screenshot(path=str(IMG / "portal-reviewer-queue.png"), full_page=True)
    reviewer.get_by_label("Reasons (shown to the person)").fill("Travel records confirm the alibi.")
    with reviewer.expect_navigation():
        reviewer.get_by_role("button", name="Uphold").click()
    assert "upheld" in reviewer.content()
    check_accessibility(reviewer)

    subject.reload()
    # Upheld: the graffiti entry is reversed; only littering (-5) remains: 995.
    assert subject.locator("#points").inner_text() == "995"
    assert "Travel records confirm the alibi." in subject.content()
    assert "upheld" in subject.content()
    check_accessibility(subject)


def test_a_forged_form_is_refused(browser: Any, server: str) -> None:
    page = browser.new_page()
    sign_in(page, server, "subject-token")
    response = page.request.post(
        f"{server}/me/contest", form={"entry": "l1#littering", "reason": "x", "csrf": "forged"}
    )
    assert response.status == 422
    assert "could not be done" in response.text() and "form expired" in response.text()
    page.reload()
    assert page.locator("#points").inner_text() in ("995", "945")


def test_operators_and_auditors_see_aggregates_only(browser: Any, server: str) -> None:
    """The report in the portal: plots and tables of protected aggregates, no subject id."""
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, server, "auditor-token")
    assert page.url.endswith("/reports")
    html = page.content()
    assert "resident-7" not in html  # never an individual record
    assert "&lt;10" in html or "<10" in page.inner_text("body")  # one resident: suppressed
    images = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert images and all(w > 0 for w in images)
    check_accessibility(page)
    denied = browser.new_page()
    sign_in(denied, server, "subject-token")
    denied.goto(f"{server}/reports")
    assert denied.url.endswith("/signin")
