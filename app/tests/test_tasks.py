"""Unit tests: the tasks' own logic, executed locally (eagerly) with .apply()."""

import os
import socket

import pytest

from demo import tasks
from demo.models import Heartbeat, SlowTaskCompletion
from proj.celery import app as celery_app
from proj.celery import debug_task


def test_task_names_are_stable():
    for name in ("add", "multiply", "heartbeat", "slow", "whoami"):
        assert f"demo.tasks.{name}" in celery_app.tasks
    assert debug_task.name == "proj.celery.debug_task"


def test_add_and_multiply():
    assert tasks.add.apply(args=(16, 16)).get() == 32
    assert tasks.multiply.apply(args=(6, 7)).get() == 42


def test_whoami_reports_host_and_pid():
    assert tasks.whoami.apply().get() == {"hostname": socket.gethostname(), "pid": os.getpid()}


def test_debug_task_prints_request(capsys):
    debug_task.apply()
    assert "Request:" in capsys.readouterr().out


@pytest.mark.django_db
def test_heartbeat_creates_then_increments_the_beat_row():
    tasks.heartbeat.apply().get()
    first = Heartbeat.objects.get(name="beat")
    tasks.heartbeat.apply().get()
    second = Heartbeat.objects.get(name="beat")
    assert (first.count, second.count) == (1, 2)
    assert second.last_run >= first.last_run


@pytest.mark.django_db
def test_slow_task_records_completion_and_counts_reexecution():
    result = tasks.slow.apply(args=("unit-1", 0)).get()
    assert result == {"task_id": "unit-1", "runs": 1, "hostname": socket.gethostname()}
    tasks.slow.apply(args=("unit-1", 0)).get()
    row = SlowTaskCompletion.objects.get(task_id="unit-1")
    assert (row.starts, row.runs) == (2, 2)
    assert SlowTaskCompletion.objects.count() == 1
