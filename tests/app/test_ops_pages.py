"""The server-rendered pages: schedules table with marks, actions by POST form, schedule page."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app.ops.pages import GRID_RUNS
from cronwork.ledger import Ledger
from tests.app.conftest import KEYS, log_in, seed_ledger

pytestmark = pytest.mark.usefixtures("registered")


def row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-schedule="{name}".*?</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def marks(html: str) -> list[tuple[str, str]]:
    """(state, tooltip) of each mark, left (oldest) to right (newest)."""
    return re.findall(r'<li class="mark m-[a-z]+(?: manual)?" data-state="([a-z_]+)" title="([^"]*)"', html)


def test_schedules_page_shows_triggers_zones_next_fires_and_marks(client: FlaskClient, redis: Redis) -> None:
    states = ["succeeded"] * 10 + ["failed", "missed", "timed_out", "skipped_overlap", "paused"] * 5
    seed_ledger(redis, "hc", states)
    log_in(client)
    html = client.get("/").get_data(as_text=True)

    hc = row(html, "hc")
    assert "every 30 minutes" in hc and "Asia/Shanghai" in hc
    assert "Prove the pipeline end to end" in hc
    shown = marks(hc)  # the outcome grid's row: GRID_RUNS cells, newest at the right
    assert len(shown) == GRID_RUNS
    assert [state for state, _ in shown] == states[-GRID_RUNS:]
    assert re.search(r'<a href="/schedules/hc#run-\d+">', hc)  # each cell opens its run's row
    failed_tip = next(tip for state, tip in shown if state == "failed")
    assert "failed" in failed_tip and "RuntimeError: boom at" in failed_tip and "1.5s" in failed_tip
    assert "CST" in failed_tip  # tick shown on the schedule's wall clock
    assert len(re.findall(r"<li>", row(html, "nightly").split('class="later"')[1].split("</ul>")[0])) == 4

    assert "at 02:00" in row(html, "nightly")  # cron-descriptor's words
    assert "never ran" in row(html, "nightly")
    # A schedule with fewer runs keeps the grid's columns: empty cells on the old side.
    assert row(html, "nightly").count('class="mark m-none"') == GRID_RUNS
    backfill = row(html, "backfill")
    assert "disabled" in backfill and re.search(r"<button[^>]*disabled[^>]*>Run now", backfill)
    for name in ("hc", "nightly"):
        assert 'name="csrf_token"' in row(html, name) and 'name="reason"' in row(html, name)


def test_pause_resume_and_run_by_form(client: FlaskClient, redis: Redis) -> None:
    token = log_in(client)
    paused = client.post("/schedules/hc/pause", data={"reason": "db <migration>", "csrf_token": token})
    assert paused.status_code == 303 and paused.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    hc = row(html, "hc")
    assert 'class="paused"' in hc and "db &lt;migration&gt;" in hc and ">Resume</button>" in hc
    assert "Paused hc." in html

    ran = client.post("/schedules/hc/run", data={"csrf_token": token, "next": "/schedules/hc"})
    assert ran.headers["Location"] == "/schedules/hc"
    page = client.get("/schedules/hc").get_data(as_text=True)
    assert "Enqueued a manual run of hc" in page
    newest = Ledger(redis, KEYS).history("hc", 1)[0]
    assert (newest["state"], newest["trigger"]) == ("enqueued", "manual")
    state, tip = marks(page)[-1]
    assert state == "enqueued" and "manual" in tip

    resumed = client.post("/schedules/hc/resume", data={"csrf_token": token})
    assert resumed.status_code == 303
    assert not redis.hexists(KEYS.paused, "hc")
    assert "Resumed hc." in client.get("/").get_data(as_text=True)


def test_refused_actions_are_explained(client: FlaskClient, redis: Redis) -> None:
    token = log_in(client)
    client.post("/schedules/hc/pause", data={"reason": "  ", "csrf_token": token})
    html = client.get("/").get_data(as_text=True)
    assert "Pause hc: a reason is required" in html
    client.post("/schedules/backfill/run", data={"csrf_token": token})
    assert "not registered" in client.get("/").get_data(as_text=True)
    client.post("/schedules/hc/pause", data={"reason": "x" * 501, "csrf_token": token})
    assert "too long" in client.get("/").get_data(as_text=True)
    assert not redis.hexists(KEYS.paused, "hc")
    assert client.post("/schedules/nope/run", data={"csrf_token": token}).status_code == 404
    evil = client.post("/schedules/hc/resume", data={"csrf_token": token, "next": "//evil.example/"})
    assert evil.headers["Location"] == "/"


def test_schedule_page_lists_the_ledger_with_errors(client: FlaskClient, redis: Redis) -> None:
    ticks = seed_ledger(redis, "hc", ["succeeded", "failed", "timed_out"])
    log_in(client)
    page = client.get("/schedules/hc")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('<tr data-state="') == 3
    assert f"RuntimeError: boom at {ticks[1]}" in html and f"RuntimeError: boom at {ticks[2]}" in html
    assert "jobs.system.health_check" in html and "every 30 minutes" in html
    assert len(re.findall(r"<li>[^<]+ CST", html)) == 10  # next ten fire times
    assert "None in the failed registry." in html
    assert client.get("/schedules/nope").status_code == 404


def test_login_redirects_back_to_the_page_asked_for(client: FlaskClient) -> None:
    first = client.get("/schedules/hc")
    assert first.status_code == 302 and first.headers["Location"] == "/login?next=/schedules/hc"
    form = client.get(first.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/schedules/hc"' in form


def test_schedule_page_shows_each_attempt_of_a_retried_run(client: FlaskClient, redis: Redis) -> None:
    [tick] = seed_ledger(redis, "hc", ["failed"])
    ledger = Ledger(redis, KEYS)
    ledger.put("hc", tick, {"attempt": 2})
    ledger.put_attempt(
        "hc", tick, {"attempt": 1, "state": "retrying", "error_type": "IOError", "error": "flaky"}
    )
    ledger.put_attempt(
        "hc", tick, {"attempt": 2, "state": "failed", "error_type": "IOError", "error": "again"}
    )
    log_in(client)
    html = client.get("/schedules/hc").get_data(as_text=True)
    assert "attempt 1: retrying — IOError: flaky" in html
    assert "attempt 2: failed — IOError: again" in html


def test_schedule_page_charts_duration_and_start_lag_and_its_next_fires(client: FlaskClient, redis: Redis) -> None:
    log_in(client)
    empty = client.get("/schedules/hc").get_data(as_text=True)
    assert "Duration: no run has a value yet." in empty and "Start lag (tick to start): no run" in empty
    assert empty.count('class="fire"') == 10  # the next ten fire times on their axis

    ticks = seed_ledger(redis, "hc", ["succeeded", "failed", "missed", "succeeded"])
    html = client.get("/schedules/hc").get_data(as_text=True)
    charts = re.findall(r'<figure class="chart"><figcaption>([^<]+)</figcaption>(.*?)</figure>', html, re.S)
    assert [title for title, _ in charts] == ["Duration", "Start lag (tick to start)", "Next fire times"]
    for _, svg in charts[:2]:
        assert re.search(r'<path class="series" d="M[\d.]+,[\d.]+( L[\d.]+,[\d.]+){2}"/>', svg)  # 3 runs ran
        assert svg.count("<circle") == 3 and 's-failed' in svg and 'class="label"' in svg
    assert "1.5s" in charts[0][1] and "500ms" in charts[1][1]  # tooltips: duration, lag
    assert "style=" not in html  # the CSP allows no inline styles
    assert f'id="run-{ticks[1]}"' in html
