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
