"""The monitor in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
during a running demo: every page loads, pages update live, drill-down by clicking works, an
operator write goes through the page. Screenshots are kept in tests/artifacts/monitor/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from epic_wfms.config import load_config
from epic_wfms.monitor.auth import issue_token, local_private_key

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "monitor"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``epic-wfms demo --monitor`` at a slow pace, as a user starts it; yields the URL.
    The run outlasts the tests (about two minutes); it is interrupted at the end."""
    data_dir = tmp_path_factory.mktemp("monitor-browser") / "wfms"
    local_private_key(load_config(data_dir=data_dir))  # the issuer key, before the demo reads it
    env = {**os.environ, "EPIC_WFMS_MONITOR__LIVE_POLL_S": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "epic_wfms.cli.main", "demo", "--monitor", "--monitor-port", "0",
         "--stfs", "400", "--rate", "3", "--json", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    match = re.search(r"monitor: (http://\S+)", line)
    assert match, f"no monitor URL from the demo: {line!r} {proc.stderr.read()}"
    yield match.group(1), data_dir
    proc.terminate()  # its pilots end with it (their stdin closes)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def page(demo):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        yield page
        browser.close()


def shot(page: Page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=full_page)


def counter(page: Page, stage: str) -> int:
    return int(page.locator(f'#pipeline [data-stage="{stage}"] .n').inner_text())


def test_dashboard_updates_live_while_the_run_goes(page, demo):
    url, _ = demo
    page.goto(url)
    expect(page.locator("#current-run-link")).to_be_visible(timeout=30_000)
    expect(page.locator("#live-status.on")).to_be_visible(timeout=10_000)
    page.wait_for_function("document.body.dataset.updates > 0", timeout=20_000)
    before = counter(page, "produced")
    page.wait_for_function(
        f"Number(document.querySelector('#pipeline [data-stage=produced] .n')"
        f".innerText) > {before}", timeout=20_000)  # no reload: the SSE refresh brought it
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "dashboard")


def test_operator_suspends_and_resumes_from_the_page(page, demo):
    url, data_dir = demo
    token = issue_token(load_config(data_dir=data_dir), "olga", ["operator"])
    page.goto(url)
    page.evaluate(f"localStorage.setItem('epicToken', '{token}')")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("olga · operator", timeout=10_000)
    page.once("dialog", lambda dialog: dialog.accept("browser test: hold"))
    page.get_by_role("button", name="Suspend processing").click()
    expect(page.locator("#hold")).to_contain_text("olga", timeout=10_000)
    shot(page, "dashboard-suspended")
    page.once("dialog", lambda dialog: dialog.accept("browser test: go on"))
    page.get_by_role("button", name="Resume processing").click()
    expect(page.locator("#hold")).to_have_count(0, timeout=10_000)


def test_drill_down_from_run_to_stf_to_job_and_file(page, demo):
    url, _ = demo
    page.goto(url)
    page.locator("#current-run-link").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(page.locator("#stfs a").first).to_be_visible(timeout=20_000)
    shot(page, "run")
    page.locator("#stfs a").first.click()
    expect(page).to_have_url(re.compile(r"/stfs/swf\.\d+\.\d+\.stf$"))
    expect(page.locator("#timeline li").first).to_have_class(re.compile("done"))
    expect(page.locator("a[href^='/jobs/']").first).to_be_visible(timeout=20_000)
    shot(page, "stf")
    page.locator("a[href^='/jobs/']").first.click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator("h1")).to_contain_text("Job")
    shot(page, "job")
    page.locator("a[href^='/files/']").first.click()
    expect(page).to_have_url(re.compile(r"/files/"))
    shot(page, "file")


@pytest.mark.parametrize("path,marker", [
    ("/state", "#current-state"), ("/runs", "#runs"), ("/stfs", "#stfs"), ("/jobs", "#jobs"),
    ("/sites", "#sites"), ("/sites/E1_BNL", "h1"), ("/issues", "#issues"),
    ("/users/olga", "#commands"), ("/fastpath", "h1"), ("/resources", "#usage-totals"),
    ("/brokerage", "#fabric-sites"), ("/tasks", "#tasks"), ("/templates", "#templates"),
])
def test_every_page_loads(page, demo, path, marker):
    url, _ = demo
    response = page.goto(url.rstrip("/") + path)
    assert response.status == 200
    expect(page.locator(marker).first).to_be_visible()
    assert not page.locator("text=Internal Server Error").count()
    shot(page, path.strip("/").replace("/", "-"), full_page=False)
    if path == "/state":
        expect(page.locator(".node.current")).to_have_count(1)
    if path == "/users/olga":
        expect(page.locator("#commands")).to_contain_text("suspend")
