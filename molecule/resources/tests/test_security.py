"""Measured hardening: the units' systemd exposure scores, and the worker's refusal of pickle."""

import re
import shlex
import time

from conftest import NAME, POOLS, SCENARIO, run_ok, unit_of

# systemd-analyze security's overall exposure, 0 (locked down) to 10 (exposed). The role's
# units score 1.7; docs/RELIABILITY.md lists the directives left out and why.
MAX_EXPOSURE = 2.0
UNITS = [unit_of(pool) for pool in POOLS] + [f"{NAME}-beat.service", f"{NAME}-web.service"]
# The unacked-task timer's service exists on Redis only.
if SCENARIO.get("django_celery_broker", "redis") == "redis":
    UNITS.append(f"{NAME}-unacked.service")


def exposure(host, unit: str) -> float:
    out = run_ok(host, "systemd-analyze", "security", "--no-pager", unit)
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))


def test_every_unit_of_the_role_scores_at_most_2_in_systemd_analyze_security(host):
    scores = {unit: exposure(host, unit) for unit in UNITS}
    assert max(scores.values()) <= MAX_EXPOSURE, scores


def test_every_unit_of_the_role_runs_with_umask_0027(host):
    """systemd skips a directive it cannot parse and starts the unit anyway (a comment glued to
    the end of UMask= once left the workers at 0022): files a service writes stay its own."""
    masks = {
        unit: run_ok(host, "systemctl", "show", "-p", "UMask", "--value", unit).strip()
        for unit in UNITS
    }
    assert set(masks.values()) == {"0027"}, masks


def test_worker_refuses_a_pickle_payload(host):
    """Celery accepts JSON only: a pickled task is refused by the worker, never run."""
    since = run_ok(host, "date", "+%Y-%m-%d %H:%M:%S").strip()
    code = (
        "from proj.celery import app; "
        "r = app.send_task('demo.tasks.add', args=[20, 22], serializer='pickle'); print(r.id)"
    )
    task_id = run_ok(host, f"{NAME}-manage", "shell", "-c", code).strip().splitlines()[-1]
    refused = ""
    deadline = time.monotonic() + 30
    while "Refusing to deserialize untrusted content of type pickle" not in refused:
        assert time.monotonic() < deadline, "no worker refused the pickled task"
        time.sleep(1)
        refused = host.run(
            f"journalctl --no-pager --since {shlex.quote(since)} -u '{NAME}-worker@*'"
        ).stdout
    state = run_ok(
        host,
        f"{NAME}-manage",
        "shell",
        "-c",
        f"from proj.celery import app; print(app.AsyncResult({task_id!r}).state)",
    )
    assert state.strip().splitlines()[-1] == "PENDING"


def test_a_worker_started_by_hand_as_root_refuses_to_run(host):
    """The deployed worker command, with the services' environment, run as root instead of the
    app user: it exits at start, naming the way to run it, before it takes any task."""
    app_module = SCENARIO.get("django_celery_app_module", "proj")
    start = (
        f"set -a; . /etc/{NAME}/{NAME}.env; set +a; cd /srv/{NAME}/current/src && "
        f"timeout 60 /srv/{NAME}/current/venv/bin/celery --app={app_module} worker --pool=solo "
        "--queues=refuse-root-probe --hostname=refuse-root-probe@%h"
    )
    result = host.run(f"sh -c {shlex.quote(start)}")
    assert result.rc not in (0, 124), result.rc
    assert "refusing to run a Celery worker as root" in result.stdout + result.stderr
