"""The project's admin site: what unfold's shows, with less work per page."""

from __future__ import annotations

import warnings

import pytest
from django.contrib import admin
from django.contrib.admin import ActionLocation
from django.contrib.auth.models import Group
from django.test import RequestFactory
from unfold.sites import UnfoldAdminSite

from backoffice.sites import BackofficeAdminSite
from payments.models import Payment
from payments.roles import roles_setup

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/payment/"


def request_for(user, path: str):
    request = RequestFactory().get(path)
    request.user = user
    return request


def shown(groups: list[dict]) -> list[tuple]:
    """What the sidebar shows of each entry, lazy values as their text."""
    return [
        (
            str(item["title"]),
            str(item["link"]),
            item["has_permission"],
            item["active"],
            str(item.get("badge_callback", "")),
        )
        for group in groups
        for item in group["items"]
    ]


@pytest.fixture
def staff(django_user_model):
    roles_setup()
    users = {}
    for role in ("Support", "Operator", "Finance"):
        user = django_user_model.objects.create_user(role.lower(), is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    users["admin"] = django_user_model.objects.create_superuser("root", None, None)
    return users


def test_the_default_admin_site_is_the_projects():
    assert isinstance(admin.site, BackofficeAdminSite)
    assert admin.site.is_registered(Payment)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        LIST,
        "/admin/payments/refund/",
        "/admin/payments/plan/",
        "/admin/payments/settlement/",
    ],
)
def test_the_sidebar_is_unfolds_for_every_role_and_page(staff, path):
    plain = UnfoldAdminSite()
    for user in staff.values():
        ours = admin.site.get_sidebar_list(request_for(user, path))
        theirs = plain.get_sidebar_list(request_for(user, path))
        assert shown(ours) == shown(theirs), (user.username, path)
    # Each role sees a different sidebar, so the comparison above compares something.
    seen = {
        tuple(
            entry[2]
            for entry in shown(admin.site.get_sidebar_list(request_for(u, path)))
        )
        for u in staff.values()
    }
    assert len(seen) > 1


def test_the_list_of_apps_is_built_only_when_read(staff, monkeypatch):
    built = []
    original = UnfoldAdminSite.get_app_list

    def counting(self, request, app_label=None):
        built.append(app_label)
        return original(self, request, app_label)

    monkeypatch.setattr(UnfoldAdminSite, "get_app_list", counting)
    request = request_for(staff["Finance"], LIST)
    context = admin.site.each_context(request)
    assert built == []
    apps = list(context["available_apps"])
    assert built == [None]
    assert apps == original(admin.site, request)
    assert {model["object_name"] for app in apps for model in app["models"]} >= {
        "Payment"
    }


def test_the_payment_list_page_never_builds_the_list_of_apps(
    client, staff, monkeypatch
):
    """Only unfold's "All applications" panel reads it, and it is off."""
    built = []
    original = UnfoldAdminSite.get_app_list

    def counting(self, request, app_label=None):
        built.append(app_label)
        return original(self, request, app_label)

    monkeypatch.setattr(UnfoldAdminSite, "get_app_list", counting)
    client.force_login(staff["Finance"])
    page = client.get(LIST)
    assert page.status_code == 200
    assert f'href="{LIST}"' in page.content.decode()  # the sidebar was rendered
    assert built == []


def test_payment_actions_use_the_current_signature(client, staff):
    """No deprecation warning (Django read the source file for each), same actions."""
    model_admin = admin.site._registry[Payment]
    finance = request_for(staff["Finance"], LIST)
    support = request_for(staff["Support"], LIST)
    assert set(model_admin.get_actions(finance)) == {"export_admin_action"}
    assert model_admin.get_actions(support) == {}
    assert model_admin.get_actions(finance, ActionLocation.CHANGE_FORM) == {}
    choices = model_admin.get_action_choices(finance)
    assert [name for name, _ in choices] == ["", "export_admin_action"]
    client.force_login(staff["Finance"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = client.get(LIST)
    assert page.status_code == 200
    assert 'value="export_admin_action"' in page.content.decode()
    assert not [w for w in caught if "Overriding get_action" in str(w.message)]
