"""The ops surface at scale: what a request costs in Redis does not grow with the runs kept,
and the schedules list pages and filters instead of drawing every schedule at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from redis.connection import AbstractConnection

from app.services.schedules import RECENT_RUNS
from tests.app.conftest import KEYS, basic, bearer, seed_ledger

SCHEDULES = 20
ENDPOINTS = {"/": basic(), "/api/schedules": bearer(), "/metrics": {}}


@pytest.fixture
def schedule_file(tmp_path: Path) -> Path:
    """SCHEDULES every-minute schedules (overrides tests/app/conftest.py's three)."""
    parts = ['[defaults]\ntimezone = "Asia/Shanghai"\ntimeout = "20s"\n']
    parts += [
        f'[schedules.s{i:02d}]\nfunc = "jobs.system.health_check"\nevery = "1m"\n' for i in range(SCHEDULES)
    ]
    path = tmp_path / "schedule.toml"
    path.write_text("\n".join(parts))
    return path


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times redis-py writes to Redis: once per command, once per pipeline."""
    count = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    yield count


def history(redis: Redis, runs: int) -> None:
    """`runs` past ticks for every schedule, mostly successes."""
    states = (["succeeded"] * 6 + ["failed", "missed"]) * (runs // 8 + 1)
    for i in range(SCHEDULES):
        seed_ledger(redis, f"s{i:02d}", states[:runs], every=60)


def cost(client: FlaskClient, redis: Redis, round_trips: list[int], path: str) -> tuple[int, int]:
    """(round trips, commands Redis executed, those of scripts included) of one GET."""
    redis.config_resetstat()
    before = round_trips[0]
    response = client.get(path, headers=ENDPOINTS[path])
    trips = round_trips[0] - before - 1  # CONFIG RESETSTAT
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    stats = redis.info("commandstats")
    commands = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_config", "cmdstat_info"))
    return trips, commands


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_redis_cost_of_a_request_does_not_grow_with_the_runs_kept(
    client: FlaskClient, redis: Redis, round_trips: list[int], path: str
) -> None:
    costs = {}
    for runs in (5, 50, 120):  # 50 and 120 both fill every window shown (30 marks, 10 for metrics)
        history(redis, runs)  # adds older ticks to the ones already there
        client.get(path, headers=ENDPOINTS[path])  # warm: the schedule file parsed, the script loaded
        costs[runs] = cost(client, redis, round_trips, path)
    trips = {runs: c[0] for runs, c in costs.items()}
    commands = {runs: c[1] for runs, c in costs.items()}
    assert trips[5] == trips[50] == trips[120], trips
    assert trips[120] <= 12, trips  # a handful of pipelines, not one per schedule, nor per run
    # Scripts' own commands included: one read per run shown, never per run kept.
    assert commands[50] == commands[120], commands
    assert commands[5] <= commands[50], commands
    assert RECENT_RUNS < 50  # /metrics reads no run at all (cronwork.stats)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-schedule="([^"]+)"', html)


@pytest.mark.usefixtures("registered")
def test_the_list_pages_filters_and_counts(
    client: FlaskClient, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.ops.pages.PAGE_SIZE", 8)
    redis.set(KEYS.failure_streak("s03"), 2)
    redis.set(KEYS.failure_streak("s15"), 1)
    redis.hset(KEYS.paused, "s07", '{"reason": "migration", "since": "2030-01-01T00:00:00+00:00"}')
    seed_ledger(redis, "s09", ["succeeded", "failed"], every=60)

    def page(query: str) -> str:
        response = client.get(f"/{query}", headers=basic())
        assert response.status_code == 200
        return response.get_data(as_text=True)

    first = page("")
    assert rows(first) == [f"s{i:02d}" for i in range(8)]
    assert "20 declared" in first and "2 failing" in first and "1 paused" in first
    assert 'href="/?page=2"' in first and 'href="/?page=3"' in first
    second = page("?page=2")
    assert rows(second) == [f"s{i:02d}" for i in range(8, 16)]
    assert len(re.findall(r'data-state="(?:succeeded|failed)"', second)) == 2  # s09's marks
    assert 'name="next" value="/?page=2"' in second  # an action comes back to this page
    assert rows(page("?page=99")) == ["s16", "s17", "s18", "s19"]  # past the end: the last page
    assert rows(page("?status=failing")) == ["s03", "s15"]
    assert rows(page("?status=paused")) == ["s07"]
    assert rows(page("?q=S1&status=failing")) == ["s15"]
    assert rows(page("?q=s1&page=2")) == ["s18", "s19"]
    assert 'href="/?page=1&amp;q=s1"' in page("?q=s1&page=2")  # the pager keeps the filter
    assert "No schedule matches." in page("?q=nothing")
    assert rows(page("?status=bogus&page=x")) == rows(first)  # unknown filters are ignored


@pytest.mark.usefixtures("registered")
def test_metrics_runs_are_counters_kept_by_the_transitions(client: FlaskClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert "# TYPE cronwork_schedule_runs_total counter" in text
    assert "# HELP cronwork_schedule_runs_total Runs ended (or ticks recorded) in each final state" in text
