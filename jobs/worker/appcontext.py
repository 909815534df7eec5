"""The worker bound to the Flask app: its Redis keys, its run recorder, fork-safe database."""

from __future__ import annotations

from flask import Flask
from rq import Queue, Worker
from rq.job import Job

from app.extensions import db
from cronwork.keys import Keys
from jobs.outcomes import RunRecorder


class AppBoundMixin(Worker):
    """Holds the app, and keeps the parent's database connections out of every horse."""

    flask_app: Flask
    keys: Keys
    recorder: RunRecorder

    def setup(self, app: Flask) -> None:
        """Bind the app (build_worker calls this once, before work())."""
        self.flask_app = app
        self.keys = Keys(app.config["CRONWORK_PREFIX"])
        self.recorder = RunRecorder(self.connection, self.keys)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # SQLAlchemy's advice for fork: drop the inherited pool without closing the parent's
        # sockets; the horse opens its own connections.
        with self.flask_app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)
