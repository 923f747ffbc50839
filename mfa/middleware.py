"""Hold a logged-in staff member at the TOTP step until it passes."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponseRedirect
from django.urls import reverse

from . import policy


class SecondFactorMiddleware:
    """Send a session that owes the TOTP step to it (or to enrolment).

    After django_otp's OTPMiddleware. Under the admin, every page but the
    login, logout and the second-factor pages redirects there; elsewhere (the
    staff endpoint of the API) the session counts as not logged in.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or policy.mode() == "off":
            return self.get_response(request)
        admin = reverse("admin:index")
        exempt = (
            reverse("admin:login"),
            reverse("admin:logout"),
            reverse("admin:mfa_verify"),
            reverse("admin:mfa_enrol"),
            reverse("admin:jsi18n"),
        )
        path = request.path_info
        if path.startswith(exempt) or not policy.step_needed(user):
            return self.get_response(request)
        if not path.startswith(admin):
            request.user = AnonymousUser()
            return self.get_response(request)
        name = "admin:mfa_verify" if policy.has_device(user) else "admin:mfa_enrol"
        query = urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(f"{reverse(name)}?{query}")
