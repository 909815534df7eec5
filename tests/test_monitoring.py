"""monitoring/: the alert rules pass promtool (syntax and their unit tests), the Grafana
dashboard is well formed, and every series either uses is in a real /metrics scrape."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from app.config import PROJECT_ROOT
from cronwork import store
from tests.app.conftest import KEYS, client, ops_app, registered, schedule_file  # noqa: F401
from tests.app.test_ops_metrics import play_runs

MONITORING = PROJECT_ROOT / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
DOC = PROJECT_ROOT / "docs" / "monitoring.md"
INSTALL_HINT = "install it with `make promtool` or `apt-get install -y prometheus`"
METRIC = re.compile(r"\bcronwork_[a-z_]+")
# Series a histogram or summary exposes besides its family name.
SUFFIX = re.compile(r"_(bucket|sum|count)$")
DATASOURCE_UID = "${DS_PROMETHEUS}"
SEVERITIES = {"critical", "warning"}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def graph_panels() -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard()["panels"]) if p["type"] != "row"]


# -- promtool ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of Debian's promtool; skips loudly without it, fails under CI."""
    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None
    )
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"promtool missing: CI must check the alert rules ({INSTALL_HINT})")
        pytest.skip(f"ALERT RULES NOT CHECKED: promtool missing; {INSTALL_HINT}")
    return path


def run_promtool(promtool: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=PROJECT_ROOT, input=stdin, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_rules_pass_promtool_check(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", str(RULE_TESTS))


def test_every_alert_has_for_severity_and_annotations() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names)
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """promtool only runs the cases written: each alert needs one that fires and one that does not."""
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it stays quiet"


def test_every_alert_is_documented() -> None:
    doc = DOC.read_text()
    missing = [rule["alert"] for rule in alert_rules() if f"### {rule['alert']}" not in doc]
    assert missing == [], f"docs/monitoring.md has no section for {missing}"


# -- the dashboard -------------------------------------------------------------------------


def test_dashboard_is_importable_json() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    assert board["id"] is None  # an id would collide with the importing Grafana's own
    ids = [panel["id"] for panel in all_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    source = variables["DS_PROMETHEUS"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    schedule = variables["schedule"]
    assert schedule["type"] == "query"
    assert re.fullmatch(r"label_values\(cronwork_[a-z_]+(\{.*\})?, schedule\)", schedule["definition"])
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]
    used = {
        name
        for panel in graph_panels()
        for t in panel["targets"]
        for name in re.findall(r"\$(\w+)", t["expr"])
    }
    assert used - {"__rate_interval", "__interval", "__range"} <= set(variables)


def test_every_panel_queries_the_templated_datasource() -> None:
    for panel in graph_panels():
        title = panel["title"]
        assert panel["targets"], f"{title}: no targets"
        assert panel["datasource"]["uid"] == DATASOURCE_UID, title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, title
            assert METRIC.search(target["expr"]), f"{title}: {target['expr']}"


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each panel query as a recording rule, Grafana's variables filled in."""
    filled = {"__rate_interval": "2m", "__interval": "30s", "__range": "6h"}

    def fill(expr: str) -> str:
        return re.sub(r"\$(\w+)", lambda m: filled.get(m.group(1), ".*"), expr)

    exprs = [fill(t["expr"]) for panel in graph_panels() for t in panel["targets"]]
    rules = [{"record": f"cronwork_dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool(promtool, "check", "rules", str(path))


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard()["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


# -- every series used is exported ---------------------------------------------------------


def used_by_rules() -> set[str]:
    """Names in the expressions, and in the queries of the annotation templates."""
    texts = [rule["expr"] for rule in alert_rules()]
    texts += [text for rule in alert_rules() for text in rule["annotations"].values()]
    return {name for text in texts for name in METRIC.findall(text)}


def used_by_dashboard() -> set[str]:
    board = dashboard()
    texts = [t["expr"] for panel in graph_panels() for t in panel["targets"]]
    texts += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return {name for text in texts for name in METRIC.findall(text)}


def exported(text: str) -> set[str]:
    """Names of the series with samples in an exposition (histogram parts under their family too)."""
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names |= {sample.name, SUFFIX.sub("", sample.name)}
    return names


def test_rules_and_dashboard_use_metrics_at_all() -> None:
    """The extraction below must find something, or the next test would pass on nothing."""
    assert {
        "cronwork_scheduler_up",
        "cronwork_queue_workers",
        "cronwork_schedule_runs_total",
    } <= used_by_rules()
    assert {
        "cronwork_schedule_runs_total",
        "cronwork_schedule_consecutive_failures",
        "cronwork_schedule_lag_seconds",
        "cronwork_schedule_start_latency_seconds",
        "cronwork_schedule_last_duration_seconds",
        "cronwork_schedule_last_success_timestamp_seconds",
        "cronwork_queue_length",
        "cronwork_queue_workers",
        "cronwork_scheduler_heartbeat_age_seconds",
        "cronwork_scheduler_clock_offset_seconds",
    } <= used_by_dashboard()


@pytest.mark.usefixtures("registered")
def test_every_metric_used_is_in_a_real_scrape(client: FlaskClient, redis: Redis) -> None:  # noqa: F811
    """Registered schedules with runs played through the real transitions, a live scheduler: the
    series the rules and panels read are all there, under the names they use."""
    play_runs(redis, "hc")
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time() - 1, clock_offset=0.01)
    response = client.get("/metrics")
    assert response.status_code == 200
    names = exported(response.get_data(as_text=True))
    for what, used in (("alerts.yml", used_by_rules()), ("grafana-dashboard.json", used_by_dashboard())):
        missing = {SUFFIX.sub("", name) for name in used} - names
        assert missing == set(), f"{what} uses series /metrics does not export: {sorted(missing)}"


@pytest.mark.usefixtures("registered")
def test_rule_expressions_select_real_series(
    client: FlaskClient,  # noqa: F811
    redis: Redis,
    promtool: str,
    tmp_path: Path,
) -> None:
    """The scrape passes promtool's lint, and the rules evaluated by promtool on it (held for 10
    minutes) match on the labels /metrics writes (schedule, queue, state). Annotations are left
    out (alerts_test.yml checks them); only which alerts fire, with which labels, is compared."""
    play_runs(redis, "hc")
    redis.set(KEYS.failure_streak("nightly"), 3)
    store.beat_scheduler(redis, KEYS, "scheduler-1", time.time() - 1, clock_offset=0.01)
    # No worker at all: both schedules' queue, "default", is unserved.
    exposition = client.get("/metrics").get_data(as_text=True)
    run_promtool(promtool, "check", "metrics", stdin=exposition)  # Prometheus's naming lint
    series = [
        {"series": _series(sample.name, sample.labels), "values": f"{sample.value!r}x10"}
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    labels = {"instance": "web:8000", "job": "cronwork"}
    expected = {
        "CronworkScheduleFailing": [{"severity": "warning", "schedule": "nightly", **labels}],
        "CronworkNoWorkerForQueue": [{"severity": "critical", "queue": "default", **labels}],
    }
    cases = [
        {
            "eval_time": "10m",
            "alertname": rule["alert"],
            "exp_alerts": [{"exp_labels": e} for e in expected.get(rule["alert"], [])],
        }
        for rule in alert_rules()
    ]
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "real_test.yml").write_text(yaml.safe_dump(test))
    run_promtool(promtool, "test", "rules", str(tmp_path / "real_test.yml"))


def _series(name: str, labels: dict[str, str]) -> str:
    """A promtool input series: the sample as Prometheus would store it from one target."""
    pairs = {**labels, "instance": "web:8000", "job": "cronwork"}
    return name + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(pairs.items())) + "}"
