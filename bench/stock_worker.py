"""A stock `rq.Worker` in a process that has loaded the same app and jobs as Cronwork's.

Baseline for the runtime overhead: same process size (so the same fork cost), stock Job
class, no app context, no ledger, no lock. `python -m bench.stock_worker QUEUE`.
"""

from __future__ import annotations

import gc
import sys

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from app import create_app
from app.extensions import make_redis
from jobs.worker import preload_jobs


def main(queue_name: str) -> int:
    app = create_app()
    preload_jobs()
    connection = make_redis(app.config["REDIS_URL"])
    gc.freeze()
    # The same JSON job format as Cronwork's (rq's own JSON serializer reads it).
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    Worker([queue], connection=connection, serializer=JSONSerializer).work(burst=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
