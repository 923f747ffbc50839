"""Failed admin logins recorded by django-axes: superusers look, and unlock.

django-axes' own admin is off (AXES_ENABLE_ADMIN); this one is unfold's, for
superusers alone. Deleting a row lifts that username+address lock at once.
"""

from __future__ import annotations

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from unfold.decorators import display

from .common import BackofficeModelAdmin, superuser_only


@admin.register(AccessAttempt)
class AccessAttemptAdmin(BackofficeModelAdmin):
    list_display = (
        "username",
        "ip_address",
        "failures_since_start",
        "attempt_time",
        "locked",
    )
    search_fields = ("username", "ip_address")
    ordering = ("-attempt_time",)
    fields = (
        "username",
        "ip_address",
        "user_agent",
        "path_info",
        "failures_since_start",
        "attempt_time",
    )
    readonly_fields = fields

    @display(description="Locked now", boolean=True)
    def locked(self, obj: AccessAttempt) -> bool:
        """Say whether this pair is refused right now."""
        cool_off_ends = obj.attempt_time + settings.AXES_COOLOFF_TIME
        return (
            obj.failures_since_start >= settings.AXES_FAILURE_LIMIT
            and timezone.now() < cool_off_ends
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return superuser_only(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)
