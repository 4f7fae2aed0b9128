#!/usr/bin/env bash
# Run the app's test suite (unit + integration) with pytest.
#
#   PYTHON=/path/to/venv/bin/python bash app/run-tests.sh [pytest args...]
#
# PYTHON (default python3) should have requirements.txt and requirements-test.txt
# installed; if it cannot import django and pytest_django, this script creates
# app/.venv with that interpreter and installs both files into it.
# The integration tests start their own redis-server on 127.0.0.1 (a free port,
# with a password, no persistence); Debian's redis-server package is installed
# when the binary is missing.
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ] && [ -x "$APP_DIR/.venv/bin/python" ]; then
    PYTHON="$APP_DIR/.venv/bin/python"
fi
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import django, celery, pytest, pytest_django' >/dev/null 2>&1; then
    echo "run-tests.sh: $PYTHON lacks the app's packages; creating $APP_DIR/.venv" >&2
    "$PYTHON" -m venv "$APP_DIR/.venv"
    "$APP_DIR/.venv/bin/python" -m pip install --quiet \
        -r "$APP_DIR/requirements.txt" -r "$APP_DIR/requirements-test.txt"
    PYTHON="$APP_DIR/.venv/bin/python"
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "run-tests.sh: installing Debian's redis-server package" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends redis-server
    # The tests run their own redis-server; do not leave the packaged service running
    # (it binds 127.0.0.1 only, but it is not needed). Only when systemd is PID 1.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
fi

cd "$APP_DIR"
exec "$PYTHON" -m pytest -q "$@"
