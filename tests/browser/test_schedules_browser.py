"""End to end in headless Chromium: log in, read the marks, pause, run, and use /rq's guarded actions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from app.config import PROJECT_ROOT
from cronwork.ledger import Ledger
from cronwork.serializer import JSONJob
from tests.app.conftest import KEYS, PASSWORD, USER, seed_ledger
from tests.conftest import Processes, wait_until
from tests.jobs.helpers import enqueue_run

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
        for m in hc_row(browser).find_elements(By.CSS_SELECTOR, "li.mark")
    ]


def test_operator_logs_in_pauses_and_runs_a_schedule(
    browser: Any, web_server: str, redis: Redis, processes: Processes
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
    screenshot(browser, "ops-schedule-hc.png")


def test_rq_dashboard_requeue_all_works_through_its_own_js_with_the_csrf_token(
    browser: Any, web_server: str, redis: Redis, processes: Processes
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    job_id = enqueue_run(
        redis, "broken", 'func = "jobs.diagnostics.fail"\ncron = "0 0 1 1 *"\ntimeout = "10s"'
    )
    processes.start("-m", "jobs.worker", "default", name="worker")
    wait_until(lambda: JSONJob.fetch(job_id, connection=redis).get_status() == "failed", timeout=30)

    browser.get(f"{web_server}/rq/0/view/jobs/default/failed/8/asc/1")
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    wait = WebDriverWait(browser, 10)
    wait.until(expected_conditions.element_to_be_clickable((By.ID, "requeue-all-btn"))).click()
    wait.until(expected_conditions.element_to_be_clickable((By.ID, "confirmation-modal-yes"))).click()
    wait.until(expected_conditions.invisibility_of_element_located((By.ID, "confirmation-modal")))
    # Requeued by the dashboard's POST (token in X-CSRFToken), then failed again by the worker.
    wait_until(lambda: len(JSONJob.fetch(job_id, connection=redis).results()) == 2, timeout=30)
    screenshot(browser, "ops-rq-dashboard.png")
