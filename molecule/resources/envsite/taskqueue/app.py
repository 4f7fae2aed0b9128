"""The Celery app, in a module that is not <project>.celery (django_celery_app_module)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "envsite.settings")

app = Celery("envsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["taskqueue"])
