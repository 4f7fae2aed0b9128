#!/usr/bin/env bash
# The floor a fresh converge is compared with: what a plain shell script does to get Redis, a
# virtualenv, Django, Celery, django-celery-beat and gunicorn onto the same base image, from the
# same wheelhouse the role uses (the controller's, copied in by bench/bench.py). No users, units,
# configuration, checks or idempotence: only the installs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server python3-venv >/dev/null
mkdir -p /root/wheelhouse
tar -xzf /root/wheelhouse.tar.gz -C /root/wheelhouse
python3 -m venv /opt/floor
/opt/floor/bin/pip install --quiet --no-index --find-links=/root/wheelhouse \
  -r /root/requirements.txt
systemctl enable --now redis-server >/dev/null
/opt/floor/bin/python -c 'import django, celery, django_celery_beat, gunicorn'
redis-cli ping
