"""Unit tests for /health/ with the broker and worker checks mocked out."""

from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.utils import timezone

from demo import health
from demo.models import Heartbeat

OK_BROKER = {"ok": True, "transport": "redis"}
OK_WORKERS = {"ok": True, "answered": ["w1@host"]}


@pytest.fixture
def fresh_heartbeat(db):
    return Heartbeat.objects.create(name="beat", last_run=timezone.now(), count=1)


@pytest.mark.django_db
def test_health_ok_when_everything_is_healthy(client, fresh_heartbeat):
    with (
        mock.patch.object(health, "check_broker", return_value=OK_BROKER),
        mock.patch.object(health, "check_workers", return_value=OK_WORKERS),
    ):
        response = client.get("/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "workers", "heartbeat", "queues"}
    assert body["checks"]["workers"]["answered"] == ["w1@host"]
    assert body["checks"]["heartbeat"]["max_age_seconds"] == 30


@pytest.mark.django_db
def test_health_503_names_stale_heartbeat(client, fresh_heartbeat, settings):
    settings.HEALTH_HEARTBEAT_MAX_AGE = 5
    Heartbeat.objects.update(last_run=timezone.now() - timedelta(seconds=60))
    with (
        mock.patch.object(health, "check_broker", return_value=OK_BROKER),
        mock.patch.object(health, "check_workers", return_value=OK_WORKERS),
    ):
        response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["failed"] == ["heartbeat"]
    assert response.json()["checks"]["heartbeat"]["age_seconds"] >= 60


@pytest.mark.django_db
def test_health_503_when_no_worker_answers(client, fresh_heartbeat):
    no_workers = {"ok": False, "answered": [], "error": "no worker answered"}
    with (
        mock.patch.object(health, "check_broker", return_value=OK_BROKER),
        mock.patch.object(health, "check_workers", return_value=no_workers),
    ):
        response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["failed"] == ["workers"]


@pytest.mark.django_db
def test_health_503_when_database_fails(client):
    broken = {"ok": False, "error": "OperationalError: boom"}
    with (
        mock.patch.object(health, "check_database", return_value=broken),
        mock.patch.object(health, "check_broker", return_value=OK_BROKER),
        mock.patch.object(health, "check_workers", return_value=OK_WORKERS),
    ):
        response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database", "heartbeat"]


@pytest.mark.django_db
def test_health_is_not_redirected_to_https_but_other_paths_are(client, fresh_heartbeat):
    with (
        mock.patch.object(health, "check_broker", return_value=OK_BROKER),
        mock.patch.object(health, "check_workers", return_value=OK_WORKERS),
    ):
        assert client.get("/health/").status_code == 200
    assert client.get("/admin/").status_code == 301


def test_release_names_the_code_directory_the_virtualenv_and_a_package_version(client, monkeypatch):
    monkeypatch.setenv("DEMO_RELEASE_NOTE", "note 1")
    response = client.get("/release/?package=celery", secure=True)
    body = response.json()
    assert response.status_code == 200
    assert body["release"] == Path(__file__).resolve().parents[2].name
    assert body["package"]["celery"] and body["note"] == "note 1"


def test_release_reports_a_missing_package_as_none(client):
    body = client.get("/release/?package=no-such-package", secure=True).json()
    assert body["package"] == {"no-such-package": None}
