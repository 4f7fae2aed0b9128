"""Celery beat: one unit, really firing."""

import time

from conftest import NAME, manage_json

BEAT = f"{NAME}-beat.service"


def test_beat_unit_is_active(host):
    assert host.service(BEAT).is_running


def test_beat_unit_is_enabled_at_boot(host):
    assert host.service(BEAT).is_enabled


def test_beat_heartbeat_advances(host, settings):
    interval = int(settings.get("django_celery_extra_env", {}).get("CELERY_HEARTBEAT_INTERVAL", 10))
    before = manage_json(host, "heartbeat_status")["count"]
    time.sleep(2 * interval + 2)
    after = manage_json(host, "heartbeat_status")
    assert after["count"] > before and after["age_seconds"] < 2 * interval
