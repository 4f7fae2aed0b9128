"""Celery application for the ``proj`` Django project.

Started by ``celery -A proj worker`` and
``celery -A proj beat --scheduler django_celery_beat.schedulers:DatabaseScheduler``.
All configuration lives in Django settings under the ``CELERY_`` namespace.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# Read every CELERY_* setting from Django settings (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")

# Load tasks.py from every installed Django app.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
