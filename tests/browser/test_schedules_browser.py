"""End to end in headless Chromium: log in, read the marks, pause, run, and use /rq's guarded actions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from app.config import PROJECT_ROOT
from app.ops.pages import GRID_RUNS
from cronwork.ledger import Ledger
from tests.app.conftest import KEYS, PASSWORD, USER, ops_env, seed_ledger
from tests.conftest import Processes, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("registered")]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
HISTORY = ["succeeded"] * 8 + ["failed", "succeeded", "missed", "timed_out", "skipped_overlap", "succeeded"]


def screenshot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert browser.save_screenshot(str(path)), f"could not save {path}"
    return path


def settle(predicate: Callable[[], object], timeout: float = 10) -> None:
    """Wait for `predicate`, treating elements that vanished with a page load as "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def attempt() -> object:
        try:
            return predicate()
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait_until(attempt, timeout=timeout, interval=0.2)


def hc_row(browser: Any) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, 'tr[data-schedule="hc"]')


def mark_states(browser: Any) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    return [
        (m.get_attribute("data-state"), m.get_attribute("title"))
        for m in hc_row(browser).find_elements(By.CSS_SELECTOR, "li.mark[data-state]")
    ]


def test_operator_logs_in_pauses_and_runs_a_schedule(
    browser: Any, web_server: str, redis: Redis, processes: Processes, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    seed_ledger(redis, "hc", HISTORY)
    processes.start("-m", "jobs.worker", "default", name="worker")

    browser.get(f"{web_server}/")
    assert "/login" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    settle(lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-schedule="hc"]'))

    marks = mark_states(browser)
    assert [state for state, _ in marks] == HISTORY
    assert "RuntimeError: boom at" in dict(marks)["failed"]
    assert "every 30 minutes" in hc_row(browser).text
    grid = hc_row(browser).find_elements(By.CSS_SELECTOR, "ol.grid-row li.mark")
    assert len(grid) == GRID_RUNS and {"m-failed", "m-succeeded"} <= {
        c for cell in grid for c in (cell.get_attribute("class") or "").split()
    }

    hc_row(browser).find_element(By.NAME, "reason").send_keys("maintenance window")
    hc_row(browser).find_element(By.XPATH, ".//button[normalize-space()='Pause']").click()
    settle(lambda: "paused" in (hc_row(browser).get_attribute("class") or ""))
    assert "maintenance window" in hc_row(browser).text
    assert "Paused hc." in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert redis.hexists(KEYS.paused, "hc")

    hc_row(browser).find_element(By.XPATH, ".//button[normalize-space()='Run now']").click()
    settle(lambda: "Enqueued a manual run of hc" in browser.find_element(By.TAG_NAME, "main").text)
    newest_state, newest_tip = mark_states(browser)[-1]
    assert newest_state in ("enqueued", "running", "succeeded") and "manual" in newest_tip

    def manual_run_succeeded() -> bool:
        browser.refresh()
        return mark_states(browser)[-1][0] == "succeeded"

    settle(manual_run_succeeded, timeout=30)
    assert Ledger(redis, KEYS).history("hc", 1)[0]["trigger"] == "manual"
    assert len(mark_states(browser)) == len(HISTORY) + 1
    screenshot(browser, "ops-schedules.png")

    browser.find_element(By.LINK_TEXT, "hc").click()
    settle(lambda: "/schedules/hc" in browser.current_url)
    assert "RuntimeError: boom at" in browser.find_element(By.CSS_SELECTOR, "table.ledger").text
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == 3 and len(charts[0].find_elements(By.CSS_SELECTOR, "path.series")) == 1
    assert charts[2].find_elements(By.CSS_SELECTOR, "line.fire")
    screenshot(browser, "ops-schedule-hc.png")

    # The other pages, in the same session: health, a missing page, then Redis down.
    browser.find_element(By.LINK_TEXT, "Health").click()
    settle(lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-check="health_check"]'))
    statuses = {
        row.get_attribute("data-check"): row.get_attribute("data-status")
        for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-check]")
    }
    assert statuses["redis"] == "ok" and statuses["database"] == "ok" and statuses["workers"] == "ok"
    screenshot(browser, "ops-health.png")

    browser.get(f"{web_server}/schedules/hc/no-such-page")
    assert "404" in browser.find_element(By.CSS_SELECTOR, ".error-page .code").text
    assert browser.find_element(By.LINK_TEXT, "Back to the schedules")
    screenshot(browser, "ops-404.png")

    down = redis_down_server(processes, tmp_path / "redis-down")
    # Cookies are per host, not per port: the first server's session would reach this one, whose
    # Redis (where sessions live) is down, and its login page would already be the 503.
    browser.delete_all_cookies()
    browser.get(f"{down}/login")
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    settle(lambda: browser.find_elements(By.CSS_SELECTOR, ".error-page"))
    message = browser.find_element(By.CSS_SELECTOR, ".error-page .message").text
    assert "Redis at redis://127.0.0.1:" in message and "is not answering" in message
    screenshot(browser, "ops-503-redis-down.png")


def redis_down_server(processes: Processes, folder: Path) -> str:
    """A second web server of the same app on its own Redis, which is then stopped."""
    from app.embedded_redis import EmbeddedRedis

    own = EmbeddedRedis(folder).start()
    try:
        _, base = processes.start_web("web-down", **ops_env(REDIS_URL=own.url))
    finally:
        own.stop()
    return base
