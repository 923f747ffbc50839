"""The second-factor pages under the admin: the TOTP step and enrolment."""

from __future__ import annotations

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from django_otp import match_token
from unfold.widgets import UnfoldAdminTextInputWidget

from audit import log

from . import policy, services


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=16,
        widget=UnfoldAdminTextInputWidget(
            attrs={
                "autocomplete": "one-time-code",
                "autofocus": True,
                "inputmode": "numeric",
            }
        ),
    )


def urls(site) -> list:
    """The pages, named admin:mfa_verify and admin:mfa_enrol."""
    return [
        path("mfa/verify/", _page(site, verify), name="mfa_verify"),
        path("mfa/enrol/", _page(site, enrol), name="mfa_enrol"),
    ]


def _page(site, view):
    @never_cache
    @csrf_protect
    @sensitive_post_parameters("code")
    def wrapped(request: HttpRequest) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return HttpResponseRedirect(reverse("admin:login"))
        return view(request, site)

    return wrapped


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _context(request, site, title: str, **extra) -> dict:
    return {
        **site.each_context(request),
        "title": title,
        "next": _next(request),
        **extra,
    }


def _locked(request) -> bool:
    from axes.handlers.proxy import AxesProxyHandler

    credentials = {"username": request.user.get_username()}
    return AxesProxyHandler.is_locked(request, credentials)


def _lockout(request) -> HttpResponse:
    from backoffice.security import lockout_response

    credentials = {"username": request.user.get_username()}
    logout(request)
    return lockout_response(request, credentials=credentials)


def _failed(request) -> HttpResponse | None:
    """Count a wrong code like a wrong password (django-axes); lock out at the limit."""
    user_login_failed.send(
        sender=__name__,
        credentials={"username": request.user.get_username(), "step": "otp"},
        request=request,
    )
    if getattr(request, "axes_locked_out", False) or _locked(request):
        request.axes_locked_out = False  # answered here, not by AxesMiddleware
        return _lockout(request)
    return None


def verify(request: HttpRequest, site) -> HttpResponse:
    """Ask for a code from the authenticator app (or a recovery code)."""
    user = request.user
    if not policy.step_needed(user):
        return HttpResponseRedirect(_next(request))
    if not policy.has_device(user):
        return HttpResponseRedirect(reverse("admin:mfa_enrol"))
    if _locked(request):
        return _lockout(request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["code"].replace(" ", ""))
        if device is not None:
            otp_login(request, device)
            request.session.cycle_key()
            services.axes_reset(request, user)
            log.record(
                log.MFA_VERIFIED,
                actor=user,
                request=request,
                target=user,
                detail={"device": type(device).__name__},
            )
            return HttpResponseRedirect(_next(request))
        if (locked := _failed(request)) is not None:
            return locked
        form.add_error("code", "That code is not right. Try the current one.")
    return render(
        request,
        "mfa/verify.html",
        _context(request, site, "Second factor", form=form),
    )


def enrol(request: HttpRequest, site) -> HttpResponse:
    """Set up an authenticator app: QR code, secret as text, one code to confirm."""
    user = request.user
    if policy.mode() == "off" or policy.has_device(user):
        return HttpResponseRedirect(_next(request))
    if _locked(request):
        return _lockout(request)
    device = services.enrolment_device(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"].replace(" ", "")
        enrolled = services.mfa_enrol_confirm(user=user, token=code, request=request)
        if enrolled is not None:
            otp_login(request, enrolled.device)
            request.session.cycle_key()
            services.axes_reset(request, user)
            return render(
                request,
                "mfa/recovery_codes.html",
                _context(
                    request,
                    site,
                    "Your recovery codes",
                    codes=enrolled.recovery_codes,
                ),
            )
        if (locked := _failed(request)) is not None:
            return locked
        form.add_error("code", "That code is not right. Try the current one.")
    return render(
        request,
        "mfa/enrol.html",
        _context(
            request,
            site,
            "Set up your second factor",
            form=form,
            qr_svg=services.qr_svg(device),
            secret=services.secret_text(device),
            required=policy.must_enrol(user),
        ),
    )
