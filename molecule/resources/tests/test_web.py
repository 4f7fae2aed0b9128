"""gunicorn serves the app; its health endpoint sees database, broker, workers and beat."""

import json

from conftest import NAME

HEALTH = (
    'python3 -c "import urllib.request, sys; r = urllib.request.urlopen('
    "'http://127.0.0.1:8000/health/', timeout=20); sys.stdout.write(str(r.status) + ' ' + "
    'r.read().decode())"'
)


def test_web_unit_is_active(host):
    assert host.service(f"{NAME}-web.service").is_running


def test_web_unit_is_enabled_at_boot(host):
    assert host.service(f"{NAME}-web.service").is_enabled


def test_health_endpoint_answers_200_with_everything_healthy(host):
    result = host.run(HEALTH)
    assert result.rc == 0, result.stderr
    status, body = result.stdout.split(" ", 1)
    assert (status, json.loads(body)["failed"]) == ("200", [])
