"""Admins of other apps: users, groups and django-q2's schedules and tasks.

A superuser resets a user's second factor from the user's page (the dialog
action below, audited); django-otp's own device admins are removed.

Those apps register plain Django admins; they are swapped for unfold ones
here (the `payments` app comes after them in INSTALLED_APPS). They belong to
superusers alone, whatever permissions a group is given; schedules may only
name the project's own tasks; task records are read-only for everyone.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_q.admin import FailAdmin, QueueAdmin, ScheduleAdmin, TaskAdmin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.decorators import action
from unfold.enums import ActionVariant
from unfold.forms import (
    AdminPasswordChangeForm,
    BaseDialogForm,
    UserChangeForm,
    UserCreationForm,
)
from unfold.widgets import UnfoldAdminTextareaWidget

from mfa.services import MfaError, mfa_reset

from .. import tasks
from ..services import schedulable_tasks, schedule_validate
from .common import (
    BackofficeModelAdmin,
    ReadOnlyAdminMixin,
    back_to,
    find,
    superuser_only,
)


def _replace(model, admin_class) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class SuperuserOnlyMixin:
    """Only superusers see or change these records, whatever a group grants."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return superuser_only(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return superuser_only(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)


class ReadOnlyTasksMixin(ReadOnlyAdminMixin):
    """Task records, queued or done: superusers look; nobody edits or resubmits."""

    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return superuser_only(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return superuser_only(request)


class ResetSecondFactorForm(BaseDialogForm):
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="Kept in the audit log.",
    )


class UserAdmin(SuperuserOnlyMixin, BaseUserAdmin, BackofficeModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    actions_detail = ("reset_second_factor",)

    @action(
        description="Reset second factor",
        icon="phonelink_erase",
        variant=ActionVariant.DANGER,
        permissions=["reset_second_factor"],
        dialog={
            "title": "Reset second factor",
            "description": (
                "Remove this user's authenticator app and recovery codes. They "
                "set up a new one at their next login."
            ),
            "form_class": ResetSecondFactorForm,
            "form_submit_text": "Reset",
        },
    )
    def reset_second_factor(
        self, request: HttpRequest, form: ResetSecondFactorForm, object_id
    ) -> HttpResponse:
        user = find(User, object_id)
        if user is None:
            raise Http404("no such user")
        try:
            removed = mfa_reset(
                user=user,
                actor=request.user,
                request=request,
                reason=form.cleaned_data["reason"],
            )
        except MfaError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Removed {removed} second-factor device(s) of {user.get_username()}.",
            )
        return back_to(request, reverse("admin:auth_user_change", args=[object_id]))

    def has_reset_second_factor_permission(
        self, request: HttpRequest, object_id=None
    ) -> bool:
        return superuser_only(request)


class GroupAdmin(SuperuserOnlyMixin, BaseGroupAdmin, BackofficeModelAdmin):
    pass


class ScheduleForm(forms.ModelForm):
    """Refuse any function but the project's own tasks (see services.schedules)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["func"].help_text = "One of: " + ", ".join(
            sorted(schedulable_tasks(allowed=tasks.SCHEDULABLE_TASKS))
        )

    def clean(self):
        cleaned = super().clean()
        try:
            schedule_validate(
                allowed=tasks.SCHEDULABLE_TASKS,
                func=cleaned.get("func") or "",
                hook=cleaned.get("hook"),
                args=cleaned.get("args"),
                kwargs=cleaned.get("kwargs"),
                intended_date_kwarg=cleaned.get("intended_date_kwarg"),
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


class UnfoldScheduleAdmin(SuperuserOnlyMixin, ScheduleAdmin, BackofficeModelAdmin):
    form = ScheduleForm


class UnfoldSuccessAdmin(ReadOnlyTasksMixin, TaskAdmin, BackofficeModelAdmin):
    pass


class UnfoldFailureAdmin(ReadOnlyTasksMixin, FailAdmin, BackofficeModelAdmin):
    pass


class UnfoldQueueAdmin(ReadOnlyTasksMixin, QueueAdmin, BackofficeModelAdmin):
    pass


_replace(User, UserAdmin)
# Devices are reset from the user's page (an audited dialog), never edited here.
for _device in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_device):
        admin.site.unregister(_device)
_replace(Group, GroupAdmin)
_replace(Schedule, UnfoldScheduleAdmin)
_replace(Success, UnfoldSuccessAdmin)
_replace(Failure, UnfoldFailureAdmin)
# django-q2 registers its queue only with the ORM broker (not with Redis).
if admin.site.is_registered(OrmQ):
    _replace(OrmQ, UnfoldQueueAdmin)
