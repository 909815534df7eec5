"""Secrets worth the name (issue 13): the ops surface refuses to serve with a short, placeholder
or guessable SECRET_KEY, ADMIN_TOKEN or ADMIN_PASSWORD, unless ALLOW_WEAK_SECRETS=1 says this is
development; it says which setting and why, never the value."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask

from app.config import PROJECT_ROOT
from app.devrun import dev_credentials
from app.ops.secret_policy import MIN_LENGTH, Refusal, describe, is_placeholder, refusals, weakness
from tests.app.conftest import PASSWORD, USER, bearer, log_in
from tests.conftest import Processes

STRONG_KEY = "Xq7vN2pLr9TzW4kYb8Hc3MfJd6Gs1AeR"  # 32 random characters
STRONG_TOKEN = secrets.token_urlsafe(32)
STRONG_PASSWORD = "plum tractor eleven lighthouse"
STRONG = {
    "SECRET_KEY": STRONG_KEY,
    "ADMIN_TOKEN": STRONG_TOKEN,
    "ADMIN_USER": USER,
    "ADMIN_PASSWORD": PASSWORD,  # what log_in() types
    "ALLOW_WEAK_SECRETS": False,
}


def env_example() -> dict[str, str]:
    """The values .env.example ships (what `cp .env.example .env` serves with if left as is)."""
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize(
    "value",
    ["change-me", "CHANGE_ME_long_random_string_0123456789", "ChangeMe-please", "changeme",
     "replace-me-with-a-real-secret-value", "secret", "Password123", "admin", "ADMIN-admin-2024",
     "your-secret-here"],
)
def test_placeholders_are_recognised_whatever_the_case(value: str) -> None:
    assert is_placeholder(value)


# Generated values get fixed ids: pytest-xdist's workers must collect the same test names.
@pytest.mark.parametrize(
    "value",
    [STRONG_KEY, STRONG_TOKEN, STRONG_PASSWORD, "secretary bird migration"],
    ids=["key", "generated-token", "passphrase", "phrase"],
)
def test_real_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


@pytest.mark.parametrize(
    ("setting", "value", "why"),
    [
        ("SECRET_KEY", "x", "too short"),
        ("SECRET_KEY", "Xq7vN2pLr9TzW4kYb8Hc3MfJd6Gs1Ae", "too short"),  # 31 characters
        ("ADMIN_TOKEN", "test-admin-token-4f1c9e", "too short"),
        ("ADMIN_PASSWORD", " ", "too short"),
        ("ADMIN_PASSWORD", "Tr0ub4dor&3!xyz", "too short"),  # 15 characters
        ("SECRET_KEY", "x" * 64, "too easy to guess"),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef", "too easy to guess"),
        ("ADMIN_TOKEN", "aB3$" * 8, "too easy to guess"),
        ("ADMIN_PASSWORD", "qwertyuiopasdfghjkl", "too easy to guess"),
        ("ADMIN_PASSWORD", "ops-admin-ops-admin", "too easy to guess"),  # the user name, twice
        ("ADMIN_PASSWORD", "change-me-admin-password", "placeholder"),
        ("SECRET_KEY", "changeme" + STRONG_KEY, "placeholder"),
    ],
)
def test_weak_values_are_refused_with_the_rule_and_never_the_value(setting: str, value: str, why: str) -> None:
    reason = weakness(setting, value, USER)
    assert reason is not None and why in reason
    assert value.strip() == "" or value not in reason
    assert str(len(value)) not in reason.replace(str(MIN_LENGTH[setting]), "")  # nor its length


@pytest.mark.parametrize(
    ("setting", "value"),
    [("SECRET_KEY", STRONG_KEY), ("SECRET_KEY", secrets.token_hex(16)), ("ADMIN_TOKEN", STRONG_TOKEN),
     ("ADMIN_PASSWORD", STRONG_PASSWORD), ("ADMIN_PASSWORD", secrets.token_urlsafe(12))],
    ids=["key", "generated-key", "generated-token", "passphrase", "generated-password"],
)
def test_strong_values_pass(setting: str, value: str) -> None:
    assert weakness(setting, value, USER) is None


def test_the_env_example_placeholders_are_refused() -> None:
    example = env_example()
    found = refusals(example)
    assert {r.setting for r in found} == {"SECRET_KEY", "ADMIN_TOKEN", "ADMIN_PASSWORD"}
    assert all("placeholder" in r.reason for r in found)
    for value in example.values():
        assert value not in describe(found)


def test_make_run_generates_secrets_that_pass(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    dev_credentials(env, tmp_path)
    assert refusals(env) == []


def test_missing_secrets_are_refused_even_in_development() -> None:
    config = {"SECRET_KEY": "dev", "ADMIN_TOKEN": "t", "ADMIN_USER": "", "ADMIN_PASSWORD": "", "ALLOW_WEAK_SECRETS": True}
    assert refusals(config) == [Refusal("ADMIN_USER", "not set"), Refusal("ADMIN_PASSWORD", "not set")]
    assert [r.setting for r in refusals(config, check_strength=True)] == [
        "ADMIN_USER", "ADMIN_PASSWORD", "SECRET_KEY", "ADMIN_TOKEN"
    ]
    assert refusals({**config, "ALLOW_WEAK_SECRETS": "1"}) == refusals(config)  # from a mapping of env strings


def test_strong_secrets_serve_the_ops_surface(ops_app: Flask) -> None:
    ops_app.config.update(STRONG)
    client = ops_app.test_client()
    assert client.get("/api/schedules", headers=bearer(STRONG_TOKEN)).status_code == 200


def test_weak_secrets_answer_503_naming_the_setting_and_the_rule(ops_app: Flask) -> None:
    ops_app.config.update({**STRONG, "SECRET_KEY": "k3Y-9f", "ADMIN_PASSWORD": "change-me-admin-password"})
    client = ops_app.test_client()
    api = client.get("/api/schedules", headers=bearer(STRONG_TOKEN))
    assert api.status_code == 503
    message = api.get_json()["error"]
    assert "a strong SECRET_KEY (this one is too short: at least 32 characters)" in message
    assert "a strong ADMIN_PASSWORD (this one is a placeholder" in message and "ADMIN_TOKEN" not in message
    page = client.get("/", headers={"Accept": "text/html"})
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and "SECRET_KEY" in text
    for body in (message, text):
        assert "k3Y-9f" not in body and "change-me-admin-password" not in body
    assert client.get("/healthz").status_code in (200, 503)  # stays open, whatever it says
    assert client.get("/metrics").status_code == 200
    # The development switch serves them.
    ops_app.config["ALLOW_WEAK_SECRETS"] = True
    assert client.get("/api/schedules", headers=bearer(STRONG_TOKEN)).status_code == 200


def test_a_logged_in_session_ends_when_a_secret_is_found_weak(ops_app: Flask) -> None:
    ops_app.config.update(STRONG)
    client = ops_app.test_client()
    log_in(client)
    assert client.get("/").status_code == 200
    ops_app.config["ADMIN_TOKEN"] = "admin-token"
    assert client.get("/").status_code == 503


@pytest.mark.slow
def test_gunicorn_says_once_at_start_which_secret_is_weak_and_refuses(processes: Processes) -> None:
    web, base = processes.start_web(
        ALLOW_WEAK_SECRETS="0",
        SECRET_KEY="x",
        ADMIN_TOKEN=STRONG_TOKEN,
        ADMIN_USER=USER,
        ADMIN_PASSWORD="Change-Me-Admin-Password",
    )
    start = [line for line in processes.output(web).splitlines() if "ops surface disabled" in line]
    assert len(start) == 1, processes.output(web)
    assert "SECRET_KEY is too short: at least 32 characters" in start[0]
    assert "ADMIN_PASSWORD is a placeholder" in start[0] and "ADMIN_TOKEN" not in start[0]
    assert "Change-Me-Admin-Password" not in processes.output(web)
    request = urllib.request.Request(f"{base}/api/schedules", headers=bearer(STRONG_TOKEN))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 503
    assert "a strong SECRET_KEY" in refused.value.read().decode()
