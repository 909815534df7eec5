"""No script from data (issue 13), in headless Chromium against gunicorn: jobs whose description,
exception text, result, meta, call arguments and queue name carry markup are shown as text on
every page that shows a job (the ops pages, rq-dashboard's queues, job lists, job page and
workers), nothing they carry runs or is even attempted (no CSP violation), and rq-dashboard still
works under its CSP: lists load and refresh, the job page refreshes, Requeue and Delete work."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus
from rq.results import Result

from cronwork.keys import job_key
from cronwork.ledger import Ledger
from cronwork.serializer import json_queue
from tests.app.conftest import KEYS, PASSWORD, USER
from tests.browser.test_schedules_browser import screenshot, settle
from tests.conftest import Processes, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("registered")]

# Each vector sets window.__xss to the field it came from, should anything ever run it.
VECTORS = (
    "<img src=x onerror=\"window.__xss='{f}'\">",
    "\"'><svg onload=\"window.__xss='{f}'\">",
    "<script>window.__xss='{f}'</script>",
    "<a href=\"javascript:window.__xss='{f}'\">{f} link</a>",
)
# A queue name lives in URL paths: no slash.
QUEUE = "queue<img src=x onerror=window.__xss='queue'>"
TRACEBACK = 'Traceback (most recent call last):\n  File "jobs/diagnostics.py", line 39, in fail\n'


def payload(field: str) -> str:
    """Every vector, tagged with the field that carries it."""
    return field + "".join(v.format(f=field) for v in VECTORS)


def shown(field: str) -> str:
    """What a field's payload looks like when rendered as text (JSON may escape its quotes)."""
    return f"{field}<img src=x onerror="


# Run in every document before its own scripts (CDP scripts are not subject to the page's CSP):
# record each CSP violation, so "blocked by the CSP" and "never attempted" can be told apart.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
    window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});
"""
PROBE = """
const injected = 'script:not([src]):not([nonce]):not([type="text/template"])';
return {
    xss: window.__xss === undefined ? null : String(window.__xss),
    csp: window.__csp || null,
    handlers: Array.from(document.querySelectorAll('*')).filter(
        e => Array.from(e.attributes).some(a => a.name.toLowerCase().startsWith('on'))).length,
    jslinks: document.querySelectorAll('a[href^="javascript:" i]').length,
    scripts: document.querySelectorAll(injected).length,
    text: document.body.innerText,
    titles: Array.from(document.querySelectorAll('[title]')).map(e => e.getAttribute('title')).join('\\n'),
};
"""


def assert_inert(browser: Any, page: str, *fields: str) -> None:
    """Nothing ran, was attempted or became markup; each field's payload is visible as text."""
    found = browser.execute_script(PROBE)
    assert found["csp"] == [], (page, found["csp"])  # also: rq-dashboard needs nothing the CSP blocks
    assert (found["xss"], found["handlers"], found["jslinks"], found["scripts"]) == (None, 0, 0, 0), (page, found)
    for field in fields:
        assert shown(field) in found["text"] or shown(field) in found["titles"], (page, field)


def plant(redis: Redis) -> dict[str, str]:
    """Jobs carrying payloads, through rq's API and Cronwork's JSON serializer; returns their ids."""
    now = datetime.now(UTC)
    tick = int(now.timestamp()) // 1800 * 1800
    queue = json_queue(QUEUE, redis)
    meta = {"cronwork_schedule": "hc", "tick": tick, "note": payload("meta")}

    failed = queue.enqueue(
        "jobs.diagnostics.fail", payload("arg"), job_id=KEYS.run_id("hc", tick), description=payload("desc"), meta=meta
    )
    queue.remove(failed)
    exc = f"{TRACEBACK}RuntimeError: {payload('exc')}"
    Result.create_failure(failed, ttl=3600, exc_string=exc)
    failed.set_status(JobStatus.FAILED)
    queue.failed_job_registry.add(failed, ttl=3600, exc_string=exc)

    finished = queue.enqueue("jobs.diagnostics.sleep", 0, description=payload("done"), meta=meta)
    queue.remove(finished)
    Result.create(finished, Result.Type.SUCCESSFUL, ttl=3600, return_value=payload("result"))
    finished.set_status(JobStatus.FINISHED)
    queue.finished_job_registry.add(finished, ttl=3600)

    queued = queue.enqueue("jobs.diagnostics.sleep", 0, description=payload("queued"))
    # On the worker's queue: it runs while the pages are read, so the workers page shows it.
    running = json_queue("default", redis).enqueue(
        "jobs.diagnostics.sleep", 60, scheduled_for=payload("call"), description=payload("running")
    )
    Ledger(redis, KEYS).put(
        "hc",
        tick,
        {"state": "failed", "job_id": failed.id, "error_type": "RuntimeError", "error": payload("ledger")},
    )
    return {"failed": failed.id, "finished": finished.id, "queued": queued.id, "running": running.id}


def log_in(browser: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/login")
    browser.find_element(By.NAME, "username").send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, ".login button[type=submit]").click()
    settle(lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-schedule="hc"]'))


def rows(browser: Any, selector: str) -> Any:
    """rq-dashboard's rows of a table once its JS has loaded them (not the placeholder)."""
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f"{selector} tbody tr:not([data-role=loading-placeholder])")


def test_payloads_in_jobs_stay_text_on_every_page(
    browser: Any, web_server: str, redis: Redis, processes: Processes
) -> None:
    from selenium.webdriver.common.by import By

    ids = plant(redis)
    worker = processes.start("-m", "jobs.worker", "default", name="worker")
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
    jobs = f"{web_server}/rq/0/view/jobs/{quote(QUEUE, safe='')}"
    try:
        log_in(browser, web_server)
        assert_inert(browser, "/", "ledger")

        browser.get(f"{web_server}/schedules/hc")
        assert_inert(browser, "/schedules/hc", "ledger", "exc")
        screenshot(browser, "xss-ops-schedule.png")

        browser.get(f"{web_server}/rq/")
        settle(lambda: QUEUE in browser.find_element(By.CSS_SELECTOR, "table#queues").text)
        assert_inert(browser, "rq queues", "queue")
        screenshot(browser, "xss-rq-queues.png")

        for registry, fields in (("queued", ["queued"]), ("finished", ["done"]), ("failed", ["desc", "exc"])):
            browser.get(f"{jobs}/{registry}/8/asc/1")
            settle(lambda: rows(browser, "table#jobs") and browser.find_elements(By.CSS_SELECTOR, "tr[data-job-id]"))
            assert_inert(browser, f"rq {registry} list", *fields)
        screenshot(browser, "xss-rq-failed-list.png")

        browser.get(f"{web_server}/rq/0/view/job/{ids['failed']}")
        settle(lambda: browser.find_elements(By.CSS_SELECTOR, "#job-data pre.exc_info"))
        assert_inert(browser, "rq failed job", "desc", "exc", "meta")
        screenshot(browser, "xss-rq-job.png")
        # Its auto-refresh re-renders the fields (where the payload fired again before issue 13).
        browser.execute_script("document.querySelector('#job-data > span').dataset.before = 'refresh'")
        settle(lambda: not browser.find_elements(By.CSS_SELECTOR, "#job-data > span[data-before]"), timeout=15)
        settle(lambda: browser.find_elements(By.CSS_SELECTOR, "#job-data pre.exc_info"))
        assert_inert(browser, "rq failed job, refreshed", "desc", "exc", "meta")

        wait_until(lambda: json_queue("default", redis).fetch_job(ids["running"]).get_status() == "started", 30)
        browser.get(f"{web_server}/rq/0/view/workers")
        settle(lambda: "call<img src=x" in browser.find_element(By.CSS_SELECTOR, "table#workers").text)
        assert_inert(browser, "rq workers", "call", "running")
        screenshot(browser, "xss-rq-workers.png")

        # The buttons still work under the CSP (their POSTs carry the CSRF token from its JS).
        browser.get(f"{web_server}/rq/0/view/job/{ids['finished']}")
        settle(lambda: browser.find_elements(By.CSS_SELECTOR, "#job-data pre.exc_info"))
        assert_inert(browser, "rq finished job", "done", "result", "meta")
        browser.find_element(By.ID, "delete-job-btn").click()
        settle(lambda: browser.find_element(By.ID, "confirmation-modal-yes").is_displayed())
        browser.find_element(By.ID, "confirmation-modal-yes").click()
        wait_until(lambda: not redis.exists(job_key(ids["finished"])), 10)
        settle(lambda: browser.find_elements(By.CSS_SELECTOR, "table#queues"))  # its JS went to the queues

        browser.get(f"{jobs}/failed/8/asc/1")
        settle(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-role=requeue-job-btn]"))
        browser.find_element(By.CSS_SELECTOR, "[data-role=requeue-job-btn]").click()
        wait_until(lambda: ids["failed"] in json_queue(QUEUE, redis).get_job_ids(), 10)
        assert_inert(browser, "rq failed list after requeue")
    finally:
        with contextlib.suppress(InvalidJobOperation):  # not started if the test failed early
            send_stop_job_command(redis, ids["running"])  # so the worker stops at once at teardown
    assert worker.poll() is None, processes.output(worker)
