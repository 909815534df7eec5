"""A real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) and a real web server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import PASSWORD, TOKEN, USER, ops_app, ops_env, registered, schedule_file  # noqa: F401
from tests.conftest import Processes

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "install it with `make browser` (apt-get install -y chromium chromium-driver)"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,1000",
)


def _skip_loudly(what: str) -> None:
    pytest.skip(f"BROWSER TESTS SKIPPED: {what}; {INSTALL_HINT}")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of the browser and its driver; skips (loudly) when either is missing."""
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None:
        _skip_loudly("no chromium found on PATH")
    if driver is None:
        _skip_loudly("no chromedriver found on PATH")
    return browser, driver  # type: ignore[return-value]


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium session with its own profile."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="BROWSER TESTS SKIPPED: selenium is not installed"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # An explicit driver path: Selenium Manager must never try to download one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromium[1]))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def web_server(processes: Processes, schedule_file: Path) -> str:  # noqa: F811
    """gunicorn serving `app:create_app()` on a free 127.0.0.1 port, as the Procfile's web does."""
    _, base = processes.start_web(**ops_env(SCHEDULE_FILE=str(schedule_file)))
    return base
