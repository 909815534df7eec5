"""The worker-side Job class: every job inside a fresh Flask app context, `jobs.*` only.

This is flask-rq's bound Job-class pattern: a Job subclass bound to the app, set on the
worker (and so on every job it dequeues), whose `perform()` runs in `app.app_context()`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flask import Flask
from rq.job import Job

from app.extensions import db

ALLOWED_PACKAGE = "jobs"


class ForbiddenJobFunction(RuntimeError):
    """A job names a function outside the `jobs` package; it is refused, nothing runs."""


def is_allowed(func_name: str) -> bool:
    """Whether a dotted function path lies inside the `jobs` package."""
    return func_name.startswith(f"{ALLOWED_PACKAGE}.")


class AppJob(Job):
    """An RQ job that runs inside the bound Flask app's context."""

    flask_app: ClassVar[Flask | None] = None

    def perform(self) -> Any:
        """Refuse foreign functions, then run in a fresh app context; remove the session after."""
        # Checked on the name, before rq imports anything: whoever can write to Redis must not
        # be able to run `os.system`.
        if not is_allowed(self.func_name):
            raise ForbiddenJobFunction(
                f"job {self.id}: {self.func_name!r} is outside the {ALLOWED_PACKAGE!r} package"
            )
        app = self.flask_app
        if app is None:
            raise RuntimeError("AppJob is not bound to an app: use bind_app(app)")
        with app.app_context():
            try:
                return super().perform()
            finally:
                db.session.remove()


def bind_app(app: Flask) -> type[AppJob]:
    """An AppJob subclass bound to `app`."""
    return type("BoundAppJob", (AppJob,), {"flask_app": app})
