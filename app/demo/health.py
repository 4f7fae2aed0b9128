"""Health checks behind GET /health/: database, broker, workers, heartbeat, and the queues'
figures (depth, unacknowledged tasks), which never fail it.

Each check is bounded in time so that the endpoint answers within a few seconds
even when the broker is unreachable.
"""

import time

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from proj.celery import app as celery_app

from .models import Heartbeat
from .tasks import HEARTBEAT_NAME

BROKER_CONNECT_TIMEOUT = 2.0
WORKER_PING_TIMEOUT = 1.0
# kombu's Redis transport keeps a queue's messages with a priority in sub-queues: the name, then
# "\x06\x16" and the priority step; the plain name holds step 0 (kombu.transport.redis).
REDIS_PRIORITY_STEPS = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def open_broker_connection() -> Connection:
    """A connection to CELERY_BROKER_URL with short timeouts and no retries."""
    return Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=BROKER_CONNECT_TIMEOUT,
        transport_options={
            "socket_timeout": BROKER_CONNECT_TIMEOUT,
            "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
            "max_retries": 0,
        },
    )


def check_broker(conn: Connection) -> dict:
    started = time.monotonic()
    try:
        conn.ensure_connection(max_retries=0, timeout=BROKER_CONNECT_TIMEOUT)
    except Exception as exc:
        return {"ok": False, "transport": conn.transport_cls, "error": _error(exc)}
    return {
        "ok": True,
        "transport": conn.transport_cls,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_workers(conn: Connection | None) -> dict:
    if conn is None:
        return {"ok": False, "answered": [], "error": "skipped: broker unavailable"}
    try:
        replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT, connection=conn) or []
    except Exception as exc:
        return {"ok": False, "answered": [], "error": _error(exc)}
    answered = sorted(name for reply in replies for name in reply)
    result = {"ok": bool(answered), "answered": answered}
    if not answered:
        result["error"] = f"no worker answered ping within {WORKER_PING_TIMEOUT:g}s"
    return result


def queue_names() -> list[str]:
    """The queues to report: the ones the role's deploy settings list (DJANGO_CELERY_QUEUES, the
    fleet's worker pools), else Celery's default queue."""
    return list(
        getattr(settings, "DJANGO_CELERY_QUEUES", None) or [celery_app.conf.task_default_queue]
    )


def check_queues(conn: Connection | None) -> dict:
    """Messages waiting in each queue, and tasks delivered but not yet acknowledged with the age
    of the oldest (Redis: kombu's unacked hash and unacked_index; AMQP does not tell them to a
    client). Figures only: a deep queue does not fail the health check, the alerts judge it."""
    if conn is None:
        return {"ok": True, "error": "skipped: broker unavailable"}
    names = queue_names()
    try:
        if conn.transport.driver_type == "redis":
            # A client of its own (conn_or_acquire), as kombu's own queue size does: the
            # channel's `client` attribute is its asynchronous one, which reads no replies.
            with conn.default_channel.conn_or_acquire() as client:
                depth = {
                    q: sum(client.llen(q + step) for step in REDIS_PRIORITY_STEPS) for q in names
                }
                oldest = client.zrange("unacked_index", 0, 0, withscores=True)
                count = client.hlen("unacked")
            age = max(0.0, time.time() - oldest[0][1]) if oldest else 0
            unacked = {"count": count, "oldest_age_seconds": round(age, 1)}
        else:
            depth = {q: _amqp_depth(conn, q) for q in names}
            unacked = {"count": None, "oldest_age_seconds": None}
    except Exception as exc:
        return {"ok": True, "error": _error(exc)}
    return {"ok": True, "depth": depth, "unacked": unacked}


def _amqp_depth(conn: Connection, queue: str) -> int | None:
    """Ready messages of a queue (a passive declare); None if it does not exist. Each on its own
    channel: the broker closes the channel of a passive declare of a missing queue."""
    channel = conn.channel()
    try:
        return channel.queue_declare(queue, passive=True).message_count
    except Exception:  # noqa: BLE001 - a missing queue is a figure (None), not an error
        return None
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001
            pass


def check_heartbeat() -> dict:
    max_age = float(settings.HEALTH_HEARTBEAT_MAX_AGE)
    result = {"ok": False, "age_seconds": None, "max_age_seconds": max_age}
    try:
        beat = Heartbeat.objects.filter(name=HEARTBEAT_NAME).first()
    except Exception as exc:
        result["error"] = _error(exc)
        return result
    if beat is None or beat.last_run is None:
        result["error"] = "heartbeat never ran: is celery beat running?"
        return result
    age = max(0.0, (timezone.now() - beat.last_run).total_seconds())
    result.update(
        age_seconds=round(age, 3),
        last_run=beat.last_run.isoformat(),
        count=beat.count,
        ok=age <= max_age,
    )
    if not result["ok"]:
        result["error"] = f"last heartbeat is {age:.0f}s old (max {max_age:g}s)"
    return result


def run_checks() -> dict:
    checks = {"database": check_database()}
    conn = open_broker_connection()
    try:
        checks["broker"] = check_broker(conn)
        checks["workers"] = check_workers(conn if checks["broker"]["ok"] else None)
        checks["queues"] = check_queues(conn if checks["broker"]["ok"] else None)
    finally:
        try:
            conn.release()
        except Exception:  # noqa: BLE001 - closing a broken connection must not fail the check
            pass
    checks["heartbeat"] = check_heartbeat()
    failed = [name for name, check in checks.items() if not check["ok"]]
    return {"status": "fail" if failed else "ok", "failed": failed, "checks": checks}
