"""Celery beat: one unit, really firing, and only one of it."""

import time

from conftest import NAME, manage_json

BEAT = f"{NAME}-beat.service"
WINDOW = 20


def test_beat_unit_is_active(host):
    assert host.service(BEAT).is_running


def test_beat_unit_is_enabled_at_boot(host):
    assert host.service(BEAT).is_enabled


def test_exactly_one_beat_fires_the_heartbeat_at_its_interval(host, settings):
    """Over a window W the heartbeat count rises by W / interval: none if beat is down, about
    twice that if a second beat runs the same schedule.

    Each count is read at some instant inside a manage command (timed on both sides), so the
    window lies between the gap of the two reads' inner ends and the span of their outer ends;
    one more or less covers where the window falls between two beats.
    """
    interval = int(settings.get("django_celery_extra_env", {}).get("CELERY_HEARTBEAT_INTERVAL", 10))
    t0 = time.monotonic()
    before = manage_json(host, "heartbeat_status")["count"]
    t1 = time.monotonic()
    time.sleep(WINDOW)
    t2 = time.monotonic()
    after = manage_json(host, "heartbeat_status")["count"]
    t3 = time.monotonic()
    low, high = (t2 - t1) / interval - 1, (t3 - t0) / interval + 1
    assert low <= after - before <= high, (
        f"heartbeat rose by {after - before} in {t2 - t1:.1f}-{t3 - t0:.1f} s at one per "
        f"{interval} s: expected {low:.1f} to {high:.1f}"
    )
