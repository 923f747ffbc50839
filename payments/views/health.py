"""Operations endpoints: GET /health/ (no auth) and GET /metrics (bearer token)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from .. import services
from ..metrics import render_metrics
from .common import json_error


@never_cache
@require_GET
def health(request):
    """Check the database, cache and broker; 200 when all answer, else 503."""
    report = services.system_health()
    response = JsonResponse(report.as_dict(), status=200 if report.healthy else 503)
    if not report.healthy:
        response["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
    return response


@never_cache
@require_GET
def metrics(request):
    """Prometheus text format, only for `Authorization: Bearer $METRICS_TOKEN`."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off: METRICS_TOKEN is not set")
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(token.encode(), given.encode()):
        response = json_error(401, "a valid bearer token is required")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
