"""Demo tasks. Task names (demo.tasks.*) are part of the deployment contract."""

import os
import socket
import time

from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Heartbeat, SlowTaskCompletion

HEARTBEAT_NAME = "beat"


@shared_task
def add(x, y):
    return x + y


@shared_task
def multiply(x, y):
    return x * y


@shared_task
def heartbeat():
    """Record that beat -> broker -> worker -> database works."""
    now = timezone.now()
    with transaction.atomic():
        obj, created = Heartbeat.objects.get_or_create(
            name=HEARTBEAT_NAME, defaults={"last_run": now, "count": 1}
        )
        if not created:
            Heartbeat.objects.filter(pk=obj.pk).update(last_run=now, count=F("count") + 1)
    return {"name": HEARTBEAT_NAME, "last_run": now.isoformat()}


@shared_task
def slow(task_id: str, duration: float):
    """Record the start of ``task_id``, sleep ``duration`` seconds, then record its completion.

    Idempotent: one row per task_id. Every start and every completion is counted, so a
    re-execution (a redelivery after a worker was killed) shows as starts > 1, and one that
    ran to the end twice as runs > 1.
    """
    hostname = socket.gethostname()
    with transaction.atomic():
        obj, _ = SlowTaskCompletion.objects.get_or_create(task_id=task_id)
        SlowTaskCompletion.objects.filter(pk=obj.pk).update(
            starts=F("starts") + 1, started_at=timezone.now()
        )
    time.sleep(float(duration))
    with transaction.atomic():
        SlowTaskCompletion.objects.filter(pk=obj.pk).update(
            runs=F("runs") + 1, hostname=hostname, completed_at=timezone.now()
        )
        runs = SlowTaskCompletion.objects.values_list("runs", flat=True).get(pk=obj.pk)
    return {"task_id": task_id, "runs": runs, "hostname": hostname}


@shared_task
def whoami():
    return {"hostname": socket.gethostname(), "pid": os.getpid()}
