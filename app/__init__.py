"""The Flask application factory. It opens no connection and starts nothing."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.config import PROJECT_ROOT, settings_from_env
from app.extensions import cronwork, db, migrate
from app.logs import log_to_stderr


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app: settings, extensions, blueprints, CLI — no I/O, no scheduling."""
    # Before Flask's own logger set-up (app.logger): the dev server and gunicorn have no
    # entry point of ours besides this one. A no-op where logging is configured already.
    log_to_stderr()
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(settings_from_env())
    if config:
        app.config.update(config)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})

    db.init_app(app)
    cronwork.init_app(app)  # validates the Cronwork settings; connects on first use only
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))

    from app import models  # noqa: F401  (registers the tables on db.metadata)
    from app.cli import register_cli
    from app.ops import ops_blueprint

    app.register_blueprint(ops_blueprint)
    register_cli(app)
    return app
