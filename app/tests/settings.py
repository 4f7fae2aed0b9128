"""Settings for the test run: production settings plus test-only environment.

Chooses a temp directory (SQLite files shared by the test process, the worker and
beat subprocesses), a free loopback port and password for the test's own
redis-server, then imports proj.settings unchanged. DEBUG stays off so the tests
exercise the production configuration.
"""

import os
import secrets
import socket
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TEST_TMP_DIR = Path(tempfile.mkdtemp(prefix="proj-tests-"))
REDIS_PORT = _free_port()
REDIS_PASSWORD = secrets.token_hex(16)
TEST_BROKER_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{REDIS_PORT}/0"
TEST_DB_PATH = TEST_TMP_DIR / "test.sqlite3"

# Test values win over anything in the caller's environment or app/.env.
for _name in list(os.environ):
    if _name.startswith(("DJANGO_", "DATABASE_", "CELERY_", "HEALTH_")):
        del os.environ[_name]
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-" + secrets.token_urlsafe(60),
        "DATABASE_URL": f"sqlite:///{TEST_TMP_DIR / 'db.sqlite3'}",
        "CELERY_BROKER_URL": TEST_BROKER_URL,
        "CELERY_RESULT_BACKEND": TEST_BROKER_URL,
        "DJANGO_STATIC_ROOT": str(TEST_TMP_DIR / "static"),
    }
)

from proj.settings import *  # noqa: E402, F403
from proj.settings import DATABASES  # noqa: E402

# pytest-django creates the test database in this file (not in memory), so the
# worker and beat subprocesses can be pointed at it with DATABASE_URL.
DATABASES["default"]["TEST"] = {"NAME": str(TEST_DB_PATH)}
