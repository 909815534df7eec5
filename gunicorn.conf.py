"""gunicorn settings for the web process; the app is `app:create_app()`."""

import os
import sys

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
accesslog = "-"
errorlog = "-"


def on_starting(server):  # noqa: ANN001 (gunicorn hook signature)
    """Fail fast: refuse to start when Redis or the database does not answer."""
    from app import create_app
    from app.readiness import ServiceUnavailable, wait_for_services
    from cronwork.settings import SettingsError

    try:
        wait_for_services(create_app())
    except (SettingsError, ServiceUnavailable) as exc:
        sys.stderr.write(f"web: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    server.log.info("web answering on http://%s/", bind)
