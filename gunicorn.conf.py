"""gunicorn settings for the web process; the app is `app:create_app()`."""

import os
import sys

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
accesslog = "-"
errorlog = "-"
# gunicorn ≥ 25.1 opens a control socket for `gunicornc` by default, at ONE path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): every instance of a user (two
# checkouts, the test suite's servers, make run) takes it over from the one before, so a
# `gunicornc shutdown` may stop another instance (issue 13). Cronwork stops and reloads gunicorn
# by signals (honcho, compose), so the socket is off; WEB_CONTROL_SOCKET=<path> turns it back on
# at a path of this instance's own.
control_socket_disable = not os.environ.get("WEB_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["WEB_CONTROL_SOCKET"]


def on_starting(server):  # noqa: ANN001 (gunicorn hook signature)
    """Fail fast: refuse to start when Redis or the database does not answer; say in one line
    whether the ops surface will refuse to serve (missing or weak secrets)."""
    from app import create_app
    from app.ops.secret_policy import allow_weak, describe, refusals
    from app.readiness import ServiceUnavailable, wait_for_services
    from cronwork.settings import SettingsError

    try:
        app = create_app()
        wait_for_services(app)
    except (SettingsError, ServiceUnavailable) as exc:
        sys.stderr.write(f"web: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    refused = refusals(app.config)
    if refused:
        server.log.error(
            "ops surface disabled: %s (API, pages and /rq answer 503; /healthz and /metrics stay "
            "open; `make run` generates strong dev values)",
            describe(refused),
        )
    elif allow_weak(app.config) and refusals(app.config, check_strength=True):
        weak = describe(refusals(app.config, check_strength=True))
        server.log.warning("ALLOW_WEAK_SECRETS=1 (development only): serving with weak secrets: %s", weak)
    server.log.info("web answering on http://%s/", bind)
