"""Idle-time sessions without a database write on every request."""

from __future__ import annotations

import time

from django.conf import settings

# Where a session keeps the time it was last renewed (seconds since the epoch).
RENEWED_AT = "_renewed_at"


class SessionRenewalMiddleware:
    """Renew a session's idle limit (SESSION_COOKIE_AGE) at most once a minute.

    Django's SESSION_SAVE_EVERY_REQUEST writes the session row on every request
    (an UPDATE and a COMMIT on every admin page) only to push its expiry on.
    Here a request renews the session (row and cookie) when the last renewal is
    SESSION_RENEW_SECONDS old or more, so a session ends between 8 hours minus
    a minute and 8 hours after its last request, without that write. Sits after
    SessionMiddleware; sessions that are empty (visitors, after a logout) are
    left alone, so none is created for them.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is None or session.is_empty():
            return response
        now = int(time.time())
        renewed_at = session.get(RENEWED_AT)
        if not isinstance(renewed_at, int) or not (
            0 <= now - renewed_at < settings.SESSION_RENEW_SECONDS
        ):
            session[RENEWED_AT] = now
        return response
