"""Admins of other apps: users, groups and django-q2's schedules and tasks.

Those apps register plain Django admins; they are swapped for unfold ones
here (the `payments` app comes after them in INSTALLED_APPS). They belong to
superusers alone, whatever permissions a group is given; schedules may only
name the project's own tasks; task records are read-only for everyone.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_q.admin import FailAdmin, QueueAdmin, ScheduleAdmin, TaskAdmin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from .. import tasks
from ..services import schedulable_tasks, schedule_validate
from .common import BackofficeModelAdmin, ReadOnlyAdminMixin, superuser_only


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


class UserAdmin(SuperuserOnlyMixin, BaseUserAdmin, BackofficeModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


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
_replace(Group, GroupAdmin)
_replace(Schedule, UnfoldScheduleAdmin)
_replace(Success, UnfoldSuccessAdmin)
_replace(Failure, UnfoldFailureAdmin)
# django-q2 registers its queue only with the ORM broker (not with Redis).
if admin.site.is_registered(OrmQ):
    _replace(OrmQ, UnfoldQueueAdmin)
