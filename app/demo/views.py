import importlib.metadata
import os
import sys
from pathlib import Path

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import run_checks


@never_cache
@require_GET
def health(request):
    """200 with status "ok" when database, broker, workers and heartbeat are healthy, else 503."""
    report = run_checks()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@never_cache
@require_GET
def release(request):
    """Which release answers: the directory this code was loaded from (a deploy's release
    directory is /srv/NAME/releases/RELEASE/src), the virtualenv the process runs, one
    package's version (?package=NAME) and one setting from the environment (DEMO_RELEASE_NOTE).
    Redeploy tests count the answers by release."""
    package = request.GET.get("package", "django")
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return JsonResponse(
        {
            "release": Path(__file__).resolve().parents[2].name,
            "virtualenv": str(Path(sys.prefix).resolve()),
            "package": {package: version},
            "note": os.environ.get("DEMO_RELEASE_NOTE", ""),
        }
    )
