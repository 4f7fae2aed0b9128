"""Settings of a project written without deployment in mind: everything is hardcoded.

The django_celery role must run it with the operator's broker, secret key and DEBUG = False
regardless of what this file says.
"""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "hardcoded-insecure-secret-key-from-the-shop-repository"
DEBUG = True
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "shop",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "shop.db"}}
STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

CELERY_BROKER_URL = "redis://broker.shop.invalid:6379/9"
CELERY_RESULT_BACKEND = "redis://broker.shop.invalid:6379/10"
CELERY_TASK_ACKS_LATE = False
# The project's own periodic task, hardcoded as projects do. Its settings do not list
# django_celery_beat: with the role's database scheduler the role adds it.
CELERY_BEAT_SCHEDULE = {
    "tick": {"task": "shop.tasks.tick", "schedule": 5.0, "options": {"queue": "shop"}},
}
