"""Runs inside a deployed host, through NAME-manage (the app's virtualenv and environment):

    BENCH_MODE=publish BENCH_TASKS=N  NAME-manage shell -c "import runpy; runpy.run_path('...')"
        empty the queue "celery", then queue N demo.tasks.add(1, 1) on it (no worker consuming it,
    beat stopped);
    BENCH_MODE=watch BENCH_TASKS=N    ... the same command
        print "ready", then wait until a worker has taken the first task and every one is
        acknowledged (the queue and kombu's unacked hash are empty), and print a JSON line with
        the seconds between the two and the tasks per second.

Polls Redis every 10 ms; bounded by BENCH_TIMEOUT (default 300 s).
"""

import json
import os
import sys
import time

import redis
from celery import current_app

QUEUE = "celery"
N = int(os.environ["BENCH_TASKS"])
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "300"))


def publish() -> None:
    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).delete(QUEUE)
    app = current_app
    with app.producer_or_acquire() as producer:
        for _ in range(N):
            app.send_task("demo.tasks.add", (1, 1), queue=QUEUE, producer=producer)
    print(json.dumps({"published": N}))


def watch() -> None:
    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    print("ready", flush=True)
    deadline = time.monotonic() + TIMEOUT
    first = None
    while time.monotonic() < deadline:
        waiting = client.llen(QUEUE)
        if first is None and waiting < N:
            first = time.monotonic()
        if first is not None and waiting == 0 and client.hlen("unacked") == 0:
            seconds = time.monotonic() - first
            rate = round(N / seconds, 1)
            print(json.dumps({"tasks": N, "seconds": round(seconds, 3), "rate": rate}))
            return
        time.sleep(0.01)
    left = f"{client.llen(QUEUE)} queued, {client.hlen('unacked')} unacked"
    sys.exit(f"timed out after {TIMEOUT} s: {left}")


{"publish": publish, "watch": watch}[os.environ["BENCH_MODE"]]()
