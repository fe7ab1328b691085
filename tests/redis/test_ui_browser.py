"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real
``flowcraft ui`` process and a real worker on Redis: the runs list, a run followed live to
completion, a failed node's error, a resume with an action pressed on the page, a retry of a
failed run, a cancel, and actions refused without the token or with a forged form."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from procs import FLOWCRAFT, REPO, Procs, child_env

from flowcraft_core import Blueprint, SyncClient

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FLOWCRAFT_TEST_CHROMIUM", "/usr/bin/chromium")
TOKEN = "test-token-" + uuid.uuid4().hex[:8]
# As the machine's notes advise for a closed network: no background connections.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HELD = Blueprint.from_dict(
    {
        "id": "ui-held",
        "nodes": [
            {"id": "first", "uses": "ok"},
            {"id": "hold", "uses": "hold"},
            {"id": "last", "uses": "ok"},
        ],
        "edges": [{"source": "first", "target": "hold"}, {"source": "hold", "target": "last"}],
    }
)
FAILS = Blueprint.from_dict(
    {
        "id": "ui-fails",
        "nodes": [{"id": "first", "uses": "ok"}, {"id": "x", "uses": "broken"}],
        "edges": [{"source": "first", "target": "x"}],
    }
)
FUSSY = Blueprint.from_dict(
    {
        "id": "ui-fussy",
        "nodes": [{"id": "first", "uses": "ok"}, {"id": "fussy", "uses": "fussy"}],
        "edges": [{"source": "first", "target": "fussy"}],
    }
)
APPROVAL = Blueprint.from_dict(
    {
        "id": "ui-approval",
        "nodes": [
            {"id": "ask", "uses": "ok"},
            {"id": "gate", "uses": "wait"},
            {"id": "approved", "uses": "ok"},
            {"id": "rejected", "uses": "ok"},
        ],
        "edges": [
            {"source": "ask", "target": "gate"},
            {"source": "gate", "target": "approved", "action": "approve"},
            {"source": "gate", "target": "rejected", "action": "reject"},
        ],
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def dashboard(url: str, tmp: Path) -> Iterator[str]:
    port = free_port()
    err = tmp / "ui.stderr"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [FLOWCRAFT, "ui", "--backend", url, "--port", str(port)],
            cwd=REPO,
            env=child_env(FLOWCRAFT_UI_TOKEN=TOKEN),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"flowcraft ui did not start:\n{err.read_text()}"
                    ) from None
                time.sleep(0.1)
        assert "127.0.0.1" in err.read_text()  # the default bind, said at start
        yield base
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def post(url: str, data: bytes = b"", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (make test installs it)"
)
def test_the_dashboard_in_a_real_browser(tmp_path: Path, redis_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    base_redis = redis_url.split("?")[0]
    hold_key = f"test-ui-hold-{uuid.uuid4().hex}"
    fix_key = f"test-ui-fix-{uuid.uuid4().hex}"
    env = {
        "FLOWCRAFT_TEST_GATE_URL": base_redis,
        "FLOWCRAFT_TEST_HOLD_KEY": hold_key,
        "FLOWCRAFT_TEST_FIX_KEY": fix_key,
    }
    shots = Path(os.environ.get("FLOWCRAFT_UI_SCREENSHOTS", tmp_path))
    raw = redis.Redis.from_url(base_redis)
    with Procs(tmp_path) as procs, dashboard(redis_url, tmp_path) as ui:
        procs.worker(redis_url, "ui_nodes:registry", env=env)
        client = SyncClient(redis_url)
        try:
            held = client.start(HELD)
            failed = client.start(FAILS)
            approval = client.start(APPROVAL)
            cancel_me = client.start(APPROVAL)
            fussy = client.start(FUSSY)
            assert client.result(fussy, timeout=60).status == "failed"
            assert client.result(failed, timeout=60).status == "failed"
            assert client.result(approval, timeout=60).status == "awaiting"
            assert client.result(cancel_me, timeout=60).status == "awaiting"

            # Without the token, no action: no session, a wrong bearer token, a bad form.
            assert post(f"{ui}/runs/{approval}/cancel") == 403
            assert (
                post(f"{ui}/runs/{approval}/cancel", headers={"Authorization": "Bearer no"}) == 403
            )
            assert client.status(approval) == "awaiting"

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})

                # A failed node's error, and the node drawn as failed.
                page.goto(f"{ui}/runs/{failed}")
                expect(page.locator("#run-error")).to_contain_text("always fails")
                expect(page.locator("#run-error")).to_contain_text("ValueError")
                expect(page.locator('g[data-node="x"]')).to_have_attribute("data-status", "failed")

                # The runs list: the runs (a client without the run index lists the active
                # ones and those the dashboard has shown), with a status filter.
                page.goto(ui + "/")
                for run_id in (held, failed, approval, cancel_me):
                    expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
                expect(page.locator(f'tr[data-run="{failed}"] .badge')).to_have_text("failed")
                page.screenshot(path=str(shots / "ui-runs.png"), full_page=True)
                page.select_option('select[name="status"]', "awaiting")
                page.click('form.filters button[type="submit"]')
                expect(page.locator(f'tr[data-run="{approval}"]')).to_be_visible()
                expect(page.locator(f'tr[data-run="{failed}"]')).to_have_count(0)

                # Follow the held run from the list: running, then completed, pushed live.
                page.goto(ui + "/")
                page.click(f'a[href="/runs/{held}"]')
                expect(page.locator("#run-status")).to_have_text("running")
                page.evaluate("window.__not_reloaded = true")
                raw.set(hold_key, "1")
                expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
                assert page.evaluate("window.__not_reloaded === true")
                expect(page.locator('g[data-node="last"]')).to_have_attribute(
                    "data-status", "completed"
                )

                # Resume pressed without logging in: refused, the run still waits.
                page.goto(f"{ui}/runs/{approval}")
                expect(page.locator('g[data-node="gate"]')).to_have_attribute(
                    "data-status", "awaiting"
                )
                page.screenshot(path=str(shots / "ui-run.png"), full_page=True)
                page.fill('#resume-form input[name="action"]', "approve")
                page.click("#resume")
                expect(page.locator("#problem")).to_contain_text("resume refused")
                assert client.status(approval) == "awaiting"

                # Log in with the token; a forged cross-site form token is still refused.
                page.goto(f"{ui}/runs/{approval}")
                page.fill('#login input[name="token"]', TOKEN)
                page.click('#login button[type="submit"]')
                expect(page.locator(".who")).to_have_text("actions enabled")
                page.evaluate(
                    "document.querySelector('#resume-form input[name=csrf]').value = 'forged'"
                )
                page.fill('#resume-form input[name="action"]', "approve")
                page.click("#resume")
                expect(page.locator("#problem")).to_contain_text("cross-site token")
                assert client.status(approval) == "awaiting"

                # Now the real thing: resume with an action, and see the run complete.
                page.goto(f"{ui}/runs/{approval}")
                page.fill('#resume-form input[name="action"]', "approve")
                page.fill('#resume-form input[name="output"]', '{"by": "browser"}')
                page.click("#resume")
                expect(page.locator("#message")).to_contain_text("resumed node gate")
                expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
                expect(page.locator('g[data-node="approved"]')).to_have_attribute(
                    "data-status", "completed"
                )
                # The branch not taken is drawn skipped (from the run's history) ...
                expect(page.locator('g[data-node="rejected"]')).to_have_attribute(
                    "data-status", "skipped"
                )
                # ... and the timeline has a bar per attempt that ran: ask, approved.
                expect(page.locator("#timeline .tl-row")).to_have_count(2)

                # Retry a failed run from the page once its node is fixed: it completes.
                page.goto(f"{ui}/runs/{fussy}")
                expect(page.locator('g[data-node="fussy"]')).to_have_attribute(
                    "data-status", "failed"
                )
                raw.set(fix_key, "1")
                page.click("#retry")
                expect(page.locator("#message")).to_contain_text("retry started")
                expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
                expect(page.locator('g[data-node="fussy"]')).to_have_attribute(
                    "data-status", "completed"
                )

                # Cancel from the page.
                page.goto(f"{ui}/runs/{cancel_me}")
                page.click("#cancel")
                expect(page.locator("#run-status")).to_have_text("cancelled")
                browser.close()
            result = client.result(approval, timeout=30)
            assert result.status == "completed"
            assert result.outputs["gate"] == {"by": "browser"}
            assert client.status(cancel_me) == "cancelled"
        finally:
            client.close()
            raw.delete(hold_key, fix_key)
            raw.close()
