"""The workload and fabric pages in real headless Chromium (Debian's /usr/bin/chromium driven
by Playwright) on a PostgreSQL store with a synthetic history of moderate size (bench/history.py,
the generator of the monitor benchmark): every new page loads and draws its plots, ids drill
down from page to page, and a control on a task page answers with the server's what/why/fix.
Page speed at a year's size is measured in bench/monitor_bench.py, not here."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bench.history import PANDA0, RUN0, TASK0, fill
from epic_wfms.config import load_config
from epic_wfms.monitor.auth import issue_token
from epic_wfms.monitor.server import background_monitor
from epic_wfms.store.database import Database
from tests.conftest import private_postgres_schema
from tests.test_monitor_browser import ARGS, ARTIFACTS, CHROMIUM

RUNS, STFS = 40, 300
CURRENT = RUN0 + RUNS


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    with private_postgres_schema() as url:
        db = Database(url)
        db.create_schema()
        fill(db, RUNS, STFS, decisions=50, slices=60)
        config = load_config(data_dir=tmp_path_factory.mktemp("monitor-work-browser"),
                             database_url=url, monitor={"port": 0})
        with background_monitor(config, db) as base:
            yield base.rstrip("/"), config
        db.dispose()


@pytest.fixture(scope="module")
def page(monitor):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        yield page
        browser.close()


def visit(page: Page, url: str, marker: str, shot: str) -> None:
    response = page.goto(url)
    assert response.status == 200, url
    expect(page.locator(marker).first).to_be_visible()
    assert not page.locator("text=Internal Server Error").count()
    page.screenshot(path=ARTIFACTS / f"{shot}.png", full_page=True)


def plot_drawn(page: Page, name: str, element: str = "path.series") -> None:
    svg = page.locator(f'svg.plot[data-plot="{name}"]')
    expect(svg).to_be_visible()
    box = svg.bounding_box()
    assert box["width"] > 200 and box["height"] > 40  # laid out, not collapsed
    assert svg.locator(element).count() >= 1


@pytest.mark.parametrize("path,marker,shot", [
    ("/tasks", "table.tasks", "tasks"), (f"/tasks/{TASK0 + 3 * RUNS}", "#panda-jobs", "task"),
    ("/pandajobs?status=failed", "#pandajobs", "pandajobs"),
    (f"/pandajobs/{PANDA0 + 13}", "#pandajob", "pandajob"), ("/templates", "#templates",
                                                             "templates"),
    ("/templates/simulation_campaign", "#parameters", "template"),
    ("/submissions", "#submissions", "submissions"), (f"/submissions/{RUNS}", "#steps",
                                                      "submission"),
    ("/campaigns", "#campaigns", "campaigns"), (f"/fastpath/{CURRENT}", "#histograms",
                                                "fastpath"),
    ("/brokerage", "#decisions", "brokerage"), ("/fabric/E2_NERSC", "#queues", "fabric-site"),
    ("/resources?by=workflow&hours=720", "#usage-totals", "resources"),
    ("/users/user01", "#my-tasks", "user"),
])
def test_every_new_page_loads(page, monitor, path, marker, shot):
    base, _ = monitor
    visit(page, base + path, marker, shot)


def test_plots_are_drawn(page, monitor):
    base, _ = monitor
    page.goto(f"{base}/fastpath/{CURRENT}")
    plot_drawn(page, "slice-latency")
    plot_drawn(page, "pool-size")
    plot_drawn(page, "hist-event_hits", "rect.bin")
    assert page.locator('svg.plot[data-plot="hist-event_hits"] rect.bin').count() == 40
    page.goto(base + "/")
    plot_drawn(page, "stf-latency")
    plot_drawn(page, "backlog")
    page.goto(f"{base}/resources?by=site&hours=720")
    plot_drawn(page, "usage-over-time")
    expect(page.locator('[data-plot="usage-by-group"] .hbar').first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "resources-by-site.png", full_page=True)


def test_ids_drill_down_from_task_to_job_to_stf_and_campaign_to_submission(page, monitor):
    base, _ = monitor
    page.goto(f"{base}/tasks?kind=prompt")
    page.locator("table.tasks a[href^='/tasks/']").first.click()
    expect(page).to_have_url(re.compile(r"/tasks/\d+$"))
    page.locator("#panda-jobs a[href^='/pandajobs/']").first.click()
    expect(page).to_have_url(re.compile(r"/pandajobs/\d+$"))
    job_url = page.url
    page.locator("#pandajob a[href^='/stfs/']").first.click()
    expect(page).to_have_url(re.compile(r"/stfs/swf\.\d+\.\d+\.stf$"))
    page.locator("#stf-panda-jobs a[href^='/pandajobs/']").first.click()  # and back
    expect(page).to_have_url(job_url)
    page.goto(f"{base}/campaigns")
    page.locator("#campaigns a[href^='/campaigns/']").first.click()
    expect(page.locator("#tags td.mono").first).to_be_visible()
    page.locator("#submissions a[href^='/submissions/']").first.click()
    expect(page).to_have_url(re.compile(r"/submissions/\d+$"))
    plot_drawn_bars = page.locator('[data-plot="step-progress"] .hbar')
    expect(plot_drawn_bars.first).to_be_visible()
    page.goto(f"{base}/brokerage")
    page.locator("#fabric-sites a[href^='/fabric/']").first.click()
    expect(page).to_have_url(re.compile(r"/fabric/E1_BNL$"))
    expect(page.locator('[data-plot="shares"] .hbar').first).to_be_visible()


def test_a_task_control_through_the_page_answers_what_why_fix(page, monitor):
    base, config = monitor
    token = issue_token(config, "paula", ["production_manager"])
    page.goto(f"{base}/tasks/{TASK0 + 3 * RUNS}")
    page.evaluate(f"localStorage.setItem('epicToken', '{token}')")
    page.reload()
    expect(page.locator("#whoami")).to_have_text("paula · production_manager", timeout=10_000)
    page.once("dialog", lambda dialog: dialog.accept("browser test"))
    page.get_by_role("button", name="Kill").click()
    toast = page.locator(".toast.err")
    expect(toast).to_contain_text("no PanDA server is configured here", timeout=10_000)
    expect(toast).to_contain_text("fix: set wfms.backend: panda")
