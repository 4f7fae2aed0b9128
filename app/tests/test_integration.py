"""Integration tests: real redis-server, real celery worker/beat subprocesses, shared DB file."""

import json
import socket
import time
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from demo import tasks
from demo.models import Heartbeat, SlowTaskCompletion
from tests.conftest import manage, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_add_task_goes_through_broker_and_returns_result(celery_worker):
    assert tasks.add.apply_async(args=(2, 3)).get(timeout=20) == 5


def test_whoami_runs_in_a_worker_process(celery_worker):
    result = tasks.whoami.apply_async().get(timeout=20)
    assert result["hostname"] == socket.gethostname()
    assert result["pid"] != celery_worker["process"].pid  # a prefork child, not the test


def test_run_task_command_prints_result_and_exits_zero(celery_worker):
    proc = manage("run_task", "demo.tasks.add", "2", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"


def test_run_task_command_exits_nonzero_with_message_on_timeout(celery_worker):
    started = time.monotonic()
    proc = manage(
        "run_task", "demo.tasks.add", "2", "3", "--queue", "nobody-consumes", "--timeout", "2"
    )
    assert proc.returncode != 0
    assert "no result for demo.tasks.add (task id " in proc.stderr
    assert "within 2s: is a worker running and consuming queue 'nobody-consumes'?" in proc.stderr
    assert proc.stdout == ""
    assert time.monotonic() - started < 30


def test_run_task_command_reports_task_failure(celery_worker):
    proc = manage("run_task", "demo.tasks.add", "1", '"a"')
    assert proc.returncode != 0
    assert "failed: TypeError" in proc.stderr


def test_beat_heartbeat_lands_in_database(celery_worker, celery_beat, settings):
    settings.CELERY_HEARTBEAT_INTERVAL = 2
    call_command("setup_periodic_tasks")
    proc, log = celery_beat()

    def count():
        assert proc.poll() is None, log.read_text(errors="replace")
        beat = Heartbeat.objects.filter(name="beat").first()
        return beat.count if beat else 0

    first = wait_for(lambda: count() >= 1, timeout=30, what="a first heartbeat") and count()
    wait_for(lambda: count() > first, timeout=30, what="the heartbeat count to increase")
    status = json.loads(manage("heartbeat_status").stdout)
    assert status["count"] > first and status["age_seconds"] < 30


def test_health_returns_200_when_everything_is_healthy(celery_worker, client):
    tasks.heartbeat.apply_async().get(timeout=20)  # a fresh heartbeat via broker and worker
    response = client.get("/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert any(name.startswith("test@") for name in body["checks"]["workers"]["answered"])
    assert body["checks"]["heartbeat"]["age_seconds"] is not None


def test_health_returns_503_naming_broker_when_broker_is_down(celery_worker, client, settings):
    tasks.heartbeat.apply_async().get(timeout=20)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_loopback_port()}/0"
    started = time.monotonic()
    response = client.get("/health/")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert body["failed"] == ["broker", "workers"]
    assert "refused" in body["checks"]["broker"]["error"].lower()
    assert elapsed < 5


def test_queue_status_counts_a_queue_nobody_consumes_priority_sub_queues_included(settings):
    """Three plain tasks and one with priority 9 (kombu keeps it in a sub-queue of its own)."""
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    settings.DJANGO_CELERY_QUEUES = [queue]
    for _ in range(3):
        tasks.add.apply_async(args=(1, 1), queue=queue)
    tasks.add.apply_async(args=(1, 1), queue=queue, priority=9)
    out = StringIO()
    call_command("queue_status", stdout=out)
    assert json.loads(out.getvalue())["depth"] == {queue: 4}


def test_health_reports_a_running_task_as_unacknowledged_with_its_age(celery_worker, client):
    """acks_late: the task stays in kombu's unacked hash while it runs."""
    task_id = f"held-{uuid.uuid4().hex}"
    result = tasks.slow.apply_async(args=(task_id, 4))
    wait_for(
        lambda: SlowTaskCompletion.objects.filter(task_id=task_id, starts__gt=0).exists(),
        timeout=20,
        what="the slow task to start",
    )
    time.sleep(1.5)
    queues = client.get("/health/").json()["checks"]["queues"]
    result.get(timeout=30)
    unacked = queues.get("unacked", {})
    assert unacked.get("count", 0) >= 1 and unacked["oldest_age_seconds"] >= 1, queues


def test_slow_task_completion_is_recorded_once(celery_worker):
    task_id = f"it-{uuid.uuid4().hex}"
    result = tasks.slow.apply_async(args=(task_id, 0.5)).get(timeout=30)
    assert result["task_id"] == task_id and result["runs"] == 1
    row = SlowTaskCompletion.objects.get(task_id=task_id)
    assert row.runs == 1 and row.hostname == socket.gethostname()
    report = json.loads(manage("slow_task_report", "--prefix", task_id).stdout)
    assert report == {
        "started": 1,
        "completed": 1,
        "started_twice": 0,
        "duplicated": 0,
        "ids": [task_id],
        "hosts": [socket.gethostname()],
    }
