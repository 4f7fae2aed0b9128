import psycopg2
import psycopg2._psycopg
from django.conf import settings
from django.http import JsonResponse


def index(request):
    """What the test checks: the C extension psycopg2 built on the host, and the settings read
    from the environment."""
    return JsonResponse(
        {
            "site": "envsite",
            "psycopg2": psycopg2.__version__,
            "extension": psycopg2._psycopg.__file__,
            "email_backend": settings.EMAIL_BACKEND,
            "cache": settings.CACHES["default"]["BACKEND"],
        }
    )
