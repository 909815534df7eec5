"""docker-compose.yml cannot run here (no Docker engine): check it is consistent instead."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from app.config import PROJECT_ROOT, settings_from_env

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("web", "scheduler", "worker", "worker-heavy")
LONG_RUNNING = ("redis", "postgres", *APP_SERVICES)


def procfile() -> dict[str, list[str]]:
    lines = (PROJECT_ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(cmd) for name, _, cmd in (line.partition(": ") for line in lines if line)}


def test_every_expected_service_is_there() -> None:
    assert set(SERVICES) == {"redis", "postgres", "migrate", *APP_SERVICES}


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthcheck_and_restart(name: str) -> None:
    service = SERVICES[name]
    assert service["healthcheck"]["test"], name
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", ("web", "worker", "worker-heavy"))
def test_app_services_wait_for_healthy_backends_and_migrations(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES[name]["environment"]["TZ"] == "UTC"


def test_the_scheduler_waits_for_redis_only() -> None:
    assert SERVICES["scheduler"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert SERVICES["scheduler"]["environment"]["TZ"] == "UTC"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_commands_match_the_procfile(name: str) -> None:
    assert SERVICES[name]["command"] == procfile()[name]


def test_replicas_and_migrations() -> None:
    assert SERVICES["scheduler"]["deploy"]["replicas"] == 2
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    assert SERVICES["migrate"]["command"] == ["flask", "--app", "app", "db", "upgrade"]
    assert SERVICES["migrate"]["restart"] == "no"


def test_the_clip_job_has_its_own_worker_with_the_model_and_the_images() -> None:
    """Issue 15: the heavy queue's worker loads the model before forking; the web reads the same
    model directory for /healthz (files only); the image builds with the vision extra."""
    heavy = SERVICES["worker-heavy"]
    assert heavy["command"] == ["python", "-m", "jobs.clip_worker", "heavy"]
    assert heavy["stop_grace_period"] == SERVICES["worker"]["stop_grace_period"]
    model_dir = heavy["environment"]["CLIP_MODEL_DIR"]
    assert f"./models/clip:{model_dir}:ro" in heavy["volumes"]
    assert f"room-images:{heavy['environment']['ROOM_IMAGE_DIR']}:ro" in heavy["volumes"]
    assert SERVICES["web"]["environment"]["CLIP_MODEL_DIR"] == model_dir
    assert f"./models/clip:{model_dir}:ro" in SERVICES["web"]["volumes"]
    assert "room-images" in COMPOSE["volumes"]
    assert "vision" in (PROJECT_ROOT / "Dockerfile").read_text().split("pip install", 1)[1].splitlines()[0]


def test_redis_is_configured_for_production() -> None:
    command = SERVICES["redis"]["command"]
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "--requirepass" in command


def test_app_environment_is_what_the_config_reads() -> None:
    known = set(settings_from_env({})) | {"REDIS_URL", "DATABASE_URL", "TZ", "WEB_HOST", "WEB_PORT"}
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = {k for k in env if k not in known and k not in ("SQLALCHEMY_DATABASE_URI",)}
        assert unknown == set(), f"{name} sets variables the app never reads: {unknown}"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")


def test_every_variable_used_is_in_the_env_example() -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used <= example, f"missing from .env.example: {used - example}"


def test_dockerfile_copies_what_the_services_run() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for path in ("app", "cronwork", "jobs", "scheduler_boot", "migrations", "gunicorn.conf.py"):
        assert f"COPY {path}" in dockerfile or f" {path} " in dockerfile, path
        assert (PROJECT_ROOT / path).exists(), path
    assert Path(PROJECT_ROOT / "app" / "probe.py").exists()


def test_only_the_web_is_published_and_on_the_loopback_only() -> None:
    """Plain HTTP stays on the host: a TLS-terminating proxy in front publishes it (issue 13)."""
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert published == {"web": ["127.0.0.1:8000:8000"]}
    assert SERVICES["web"]["environment"]["WEB_PORT"] == "8000"


def test_the_session_cookie_is_https_only_unless_the_env_says_otherwise() -> None:
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"]["SESSION_COOKIE_SECURE"] == "${SESSION_COOKIE_SECURE:-1}"
    assert settings_from_env({"SESSION_COOKIE_SECURE": "1"})["SESSION_COOKIE_SECURE"] is True
