"""Provider notifications: stored raw, verified, applied once."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import services
from .common import client_ip, json_error
from .errors import webhook_response


@csrf_exempt
@require_POST
def webhook(request, code: str):
    """Receive a provider notification; 2xx only once stored and applied."""
    try:
        body = request.body
    except RequestDataTooBig:
        return json_error(413, "notification body is too large")
    outcome = services.webhook_ingest(
        gateway_code=code,
        body=body,
        headers=dict(request.headers),
        remote_addr=client_ip(request),
    )
    return webhook_response(outcome)
