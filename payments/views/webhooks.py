"""Provider notifications: stored raw, verified, applied once."""

from __future__ import annotations

from django.conf import settings
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import services
from .common import client_ip, json_error
from .errors import webhook_response
from .limits import parse_rate, rate_limit_wait


class BodyTooLarge(Exception):
    pass


def _capped_body(request, cap: int) -> bytes:
    """Read at most `cap` bytes of the body; raise BodyTooLarge past it.

    The declared length is checked before anything is read, and the stream is
    read to cap + 1 bytes at most, so an oversized body never sits in memory.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        raise BodyTooLarge
    body = request.read(cap + 1)
    if len(body) > cap:
        raise BodyTooLarge
    return body


@csrf_exempt
@require_POST
def webhook(request, code: str):
    """Receive a provider notification; 2xx only once stored and applied."""
    cap = settings.API_MAX_BODY_BYTES
    try:
        body = _capped_body(request, cap)
    except BodyTooLarge:
        return json_error(413, f"notification body is over {cap} bytes")
    remote_addr = client_ip(request)
    outcome = services.webhook_ingest(
        gateway_code=code,
        body=body,
        headers=dict(request.headers),
        remote_addr=remote_addr,
        count_failure=_failure_counter(remote_addr),
    )
    return webhook_response(outcome)


def _failure_counter(remote_addr: str | None):
    """Return a counter of failed verifications for one client IP, or None.

    Each call counts one failure (RATE_LIMIT_WEBHOOK_FAILURES) and returns the
    seconds to wait when past the limit, else 0. None: no limit is set.
    """
    rate = parse_rate(settings.RATE_LIMIT_WEBHOOK_FAILURES)
    if rate is None:
        return None
    return lambda: rate_limit_wait(
        scope="webhook-failures", rate=rate, client=remote_addr or "unknown"
    )
