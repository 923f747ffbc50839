"""Every admin add, change, delete and action, recorded in the audit log.

The project's admin site (backoffice.sites) gives every ModelAdmin it
registers this mixin, so third-party admins (users, groups, schedules) are
covered as well as the project's own. Only field names are recorded, never
values: a password hash or a secret never reaches the log.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import helpers

from . import log

# At most this many object ids are listed in one action's entry.
ACTION_IDS_LISTED = 100


def changed_fields(message: Any) -> list[str]:
    """Return the field names of an admin change message (Django's JSON list)."""
    names: list[str] = []
    if not isinstance(message, list):
        return names
    for part in message:
        for verb in ("added", "changed", "deleted"):
            body = part.get(verb) if isinstance(part, dict) else None
            if not isinstance(body, dict):
                continue
            prefix = f"{body['name']}: " if body.get("name") else ""
            names += [f"{prefix}{field}" for field in body.get("fields", [])]
            if verb != "changed" and body.get("name"):
                names.append(f"{verb} {body['name']}")
    return names


# Who may do what: a user's groups, flags and permissions, a group's permissions.
ROLE_FIELDS = {"groups", "superuser status", "staff status", "user permissions"}


def _also(request, obj, verb: str, fields: list[str]) -> None:
    """Record a schedule or role change on top of the admin write itself."""
    label = obj._meta.label_lower
    detail = {"via": f"admin.{verb}", "fields": fields}
    if label == "django_q.schedule":
        log.record(log.SCHEDULE_CHANGED, request=request, target=obj, detail=detail)
    elif label == "auth.group" or (
        label == "auth.user" and ROLE_FIELDS & {f.lower() for f in fields}
    ):
        log.record(log.ROLE_CHANGED, request=request, target=obj, detail=detail)


class AuditedAdminMixin:
    """Record the admin's writes and actions (placed first in the admin's bases)."""

    def log_addition(self, request, obj, message):
        result = super().log_addition(request, obj, message)
        log.record(log.ADMIN_ADD, request=request, target=obj)
        _also(request, obj, "add", [])
        return result

    def log_change(self, request, obj, message):
        result = super().log_change(request, obj, message)
        fields = changed_fields(message)
        log.record(
            log.ADMIN_CHANGE, request=request, target=obj, detail={"fields": fields}
        )
        _also(request, obj, "change", fields)
        return result

    def log_deletions(self, request, queryset):
        result = super().log_deletions(request, queryset)
        for obj in queryset:
            log.record(log.ADMIN_DELETE, request=request, target=obj)
            _also(request, obj, "delete", [])
        return result

    def generate_log_entries(self, result, request):
        """django-import-export's import: one entry per row written."""
        parent = getattr(super(), "generate_log_entries", None)
        if parent is None:
            return None
        outcome = parent(result, request)
        actions = {"new": log.ADMIN_ADD, "update": log.ADMIN_CHANGE}
        actions["delete"] = log.ADMIN_DELETE
        label = self.model._meta.label_lower
        for row in result:
            action = actions.get(getattr(row, "import_type", None))
            if action is not None:
                log.record(
                    action,
                    request=request,
                    target=(label, row.object_id),
                    detail={"via": "import"},
                )
        return outcome

    def response_action(self, request, queryset, *args, **kwargs):
        response = super().response_action(request, queryset, *args, **kwargs)
        # None: nothing ran (no action chosen, or nothing ticked).
        if response is None:
            return response
        try:
            index = int(request.POST.get("index", 0))
        except ValueError:
            index = 0
        names = request.POST.getlist("action")
        name = names[index] if index < len(names) else (names[0] if names else "")
        # Deletions are recorded one by one once confirmed (log_deletions).
        if name == "delete_selected":
            return response
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        across = request.POST.get("select_across") == "1"
        log.record(
            log.ADMIN_ACTION,
            request=request,
            target=(self.model._meta.label_lower, ""),
            detail={
                "action": name,
                "count": queryset.count() if across else len(selected),
                "ids": [str(pk) for pk in selected[:ACTION_IDS_LISTED]],
                "select_across": across,
            },
        )
        return response


_audited: dict[type, type] = {}


def audited(admin_class: type) -> type:
    """Return `admin_class` with AuditedAdminMixin in front (one class per admin)."""
    if issubclass(admin_class, AuditedAdminMixin):
        return admin_class
    if admin_class not in _audited:
        _audited[admin_class] = type(
            admin_class.__name__,
            (AuditedAdminMixin, admin_class),
            {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
        )
    return _audited[admin_class]
