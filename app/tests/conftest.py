"""Fixtures: the test's own redis-server, a real celery worker, a real celery beat.

All are subprocesses on 127.0.0.1 started by the tests and stopped at the end.
They share the SQLite test database file with the test process, so integration
tests use ``@pytest.mark.django_db(transaction=True)`` (rows are committed).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

APP_DIR = Path(__file__).resolve().parent.parent
WORKER_NODE_PREFIX = "test@"


def pytest_unconfigure(config):
    tmp = getattr(settings, "TEST_TMP_DIR", None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def subprocess_env(**overrides) -> dict[str, str]:
    """Environment for manage.py / celery subprocesses: production settings module,
    pointed explicitly at the test database file and the test broker."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "proj.settings",
            "DJANGO_ENV_FILE": "",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": f"sqlite:///{settings.TEST_DB_PATH}",
            "CELERY_BROKER_URL": settings.TEST_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.TEST_BROKER_URL,
            "PYTHONPATH": str(APP_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def manage(*args: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=APP_DIR,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server on 127.0.0.1:<free port>, no persistence, with a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: install Debian's redis-server (run-tests.sh does)")
    workdir = Path(settings.TEST_TMP_DIR) / "redis"
    workdir.mkdir(exist_ok=True)
    log = workdir / "redis.log"
    proc = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(settings.REDIS_PORT),
            "--requirepass", settings.REDIS_PASSWORD,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
            "--logfile", str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def accepting():
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {_log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", settings.REDIS_PORT), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_for(accepting, timeout=15, interval=0.05, what="redis-server")
        yield settings.TEST_BROKER_URL
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def celery_worker(redis_server, django_db_setup):
    """A real `celery -A proj worker` subprocess that answers ping."""
    from proj.celery import app as celery_app

    log = Path(settings.TEST_TMP_DIR) / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "proj", "worker",
                "--pool", "prefork", "-c", "2",
                "-n", f"{WORKER_NODE_PREFIX}%h",
                "--loglevel", "INFO",
                "--without-mingle", "--without-gossip",
            ],
            cwd=APP_DIR,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def answers_ping():
        if proc.poll() is not None:
            raise AssertionError(f"celery worker exited:\n{_log_tail(log)}")
        replies = celery_app.control.ping(timeout=0.5) or []
        names = [name for reply in replies for name in reply]
        return [name for name in names if name.startswith(WORKER_NODE_PREFIX)]

    try:
        names = wait_for(answers_ping, timeout=45, interval=0.2, what="the worker to answer ping")
        yield {"process": proc, "nodes": names, "log": log}
    finally:
        stop_process(proc)


@pytest.fixture
def celery_beat(celery_worker):
    """Start a real `celery -A proj beat` with the DatabaseScheduler; stopped after the test."""
    procs = []

    def start():
        log = Path(settings.TEST_TMP_DIR) / f"beat-{len(procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "proj", "beat",
                    "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                    "--loglevel", "INFO",
                    "--pidfile", str(Path(settings.TEST_TMP_DIR) / f"beat-{len(procs)}.pid"),
                ],
                cwd=settings.TEST_TMP_DIR,
                env=subprocess_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append((proc, log))
        return proc, log

    yield start
    for proc, _log in procs:
        stop_process(proc)
