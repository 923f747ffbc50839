"""Unfold styling for admins of other apps: users, groups and django-q2's tasks.

Those apps register plain Django admins; they are swapped for unfold ones
here (the `payments` app comes after them in INSTALLED_APPS).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django_q.admin import FailAdmin, QueueAdmin, ScheduleAdmin, TaskAdmin
from django_q.models import Failure, OrmQ, Schedule, Success
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm


def _replace(model, admin_class) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


class UnfoldScheduleAdmin(ScheduleAdmin, ModelAdmin):
    pass


class UnfoldSuccessAdmin(TaskAdmin, ModelAdmin):
    pass


class UnfoldFailureAdmin(FailAdmin, ModelAdmin):
    pass


class UnfoldQueueAdmin(QueueAdmin, ModelAdmin):
    pass


_replace(User, UserAdmin)
_replace(Group, GroupAdmin)
_replace(Schedule, UnfoldScheduleAdmin)
_replace(Success, UnfoldSuccessAdmin)
_replace(Failure, UnfoldFailureAdmin)
# django-q2 registers its queue only with the ORM broker (not with Redis).
if admin.site.is_registered(OrmQ):
    _replace(OrmQ, UnfoldQueueAdmin)
