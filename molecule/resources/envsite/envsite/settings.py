"""Settings of the envsite test project: every deploy value from the environment (django-environ),
as a twelve-factor project has them. A missing variable fails at import, which is the point: the
role must export every name this module reads, from inventory variables alone."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env("SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS")
DATABASES = {"default": env.db("DATABASE_URL")}
CACHES = {"default": env.cache("CACHE_URL")}
CELERY_BROKER_URL = env("BROKER_URL")
# A name of this project's own, which the inventory maps the result backend to.
CELERY_RESULT_BACKEND = env("CELERY_RESULT_URL")
ADMIN_URL = env("DJANGO_ADMIN_URL")
vars().update(env.email("EMAIL_URL"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "taskqueue",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "envsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "envsite.wsgi.application"
STATIC_URL = "static/"
STATIC_ROOT = env("DJANGO_STATIC_ROOT")
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
