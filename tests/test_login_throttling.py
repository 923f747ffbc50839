"""Admin logins: django-axes locks a username+address pair; idle sessions end."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils import timezone

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "right-password-2026"
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_user(
        "ops", "ops@example.com", PASSWORD, is_staff=True, is_superuser=True
    )


def attempt(client, password: str, address: str = "203.0.113.7"):
    return client.post(
        LOGIN,
        {"username": "ops", "password": password},
        REMOTE_ADDR=address,
    )


def logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_ten_failures_lock_the_pair_and_the_right_password_is_then_refused(
    client, staff, caplog
):
    for number in range(1, 10):
        response = attempt(client, f"wrong-{number}")
        assert response.status_code == 200  # the login form, with its error
    with caplog.at_level(logging.WARNING, logger="axes"):
        tenth = attempt(client, "wrong-10")
    assert tenth.status_code == 429
    assert any("Locking out" in r.getMessage() for r in caplog.records)
    assert any("ops" in r.getMessage() for r in caplog.records)

    eleventh = attempt(client, PASSWORD)
    assert eleventh.status_code == 429
    page = eleventh.content.decode()
    assert "Too many failed logins" in page
    assert "blocked after 10 failed attempts" in page
    assert "Try again in 15 minutes" in page
    assert "<!DOCTYPE html>" in page  # the admin's page, not a bare text answer
    assert not logged_in(client)


def test_the_lock_is_per_address_another_one_logs_in(client, staff):
    for number in range(10):
        attempt(client, f"wrong-{number}")
    assert attempt(client, PASSWORD).status_code == 429
    response = attempt(client, PASSWORD, address="198.51.100.20")
    assert response.status_code == 302
    assert logged_in(client)


def test_the_lock_lifts_after_fifteen_minutes(client, staff):
    from axes.models import AccessAttempt

    for number in range(10):
        attempt(client, f"wrong-{number}")
    assert attempt(client, PASSWORD).status_code == 429

    # Axes times the lock from the last failure it recorded: move it back.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert attempt(client, PASSWORD).status_code == 429
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - timedelta(minutes=15, seconds=5)
    )
    response = attempt(client, PASSWORD)
    assert response.status_code == 302
    assert logged_in(client)


def test_fewer_failures_do_not_lock_and_a_success_starts_the_count_again(client, staff):
    for number in range(9):
        attempt(client, f"wrong-{number}")
    assert attempt(client, PASSWORD).status_code == 302
    client.logout()
    for number in range(9):
        attempt(client, f"wrong-again-{number}")
    assert attempt(client, PASSWORD).status_code == 302


def test_client_login_goes_through_axes_when_given_the_request(client, staff):
    """Code that logs in (a test, a shell) passes its request, as views do."""
    request = HttpRequest()
    request.META["REMOTE_ADDR"] = "203.0.113.7"
    assert client.login(request=request, username="ops", password=PASSWORD)

    client.logout()
    for number in range(10):
        attempt(client, f"wrong-{number}")
    assert not client.login(request=request, username="ops", password=PASSWORD)


def test_staff_sessions_end_after_eight_idle_hours(client, staff):
    from django.contrib.sessions.models import Session

    from backoffice.sessions import RENEWED_AT

    response = attempt(client, PASSWORD)
    assert response.cookies["sessionid"]["max-age"] == 8 * 60 * 60
    key = response.cookies["sessionid"].value

    def expires_in() -> timedelta:
        return Session.objects.get(session_key=key).expire_date - timezone.now()

    def renewed_seconds_ago(seconds: int) -> None:
        """Date the last renewal back, with 7 hours left on the row."""
        session = client.session
        session[RENEWED_AT] -= seconds
        session.save()
        Session.objects.filter(session_key=key).update(
            expire_date=timezone.now() + timedelta(hours=7)
        )

    # Within the minute after a renewal, a request writes nothing.
    renewed_seconds_ago(30)
    again = client.get("/admin/")
    assert again.status_code == 200
    assert "sessionid" not in again.cookies
    assert expires_in() < timedelta(hours=7)

    # A minute on, a request renews row and cookie for another 8 hours: the
    # limit is idle time.
    renewed_seconds_ago(60)
    renewed = client.get("/admin/")
    assert renewed.status_code == 200
    assert renewed.cookies["sessionid"]["max-age"] == 8 * 60 * 60
    assert timedelta(hours=7, minutes=59) < expires_in() <= timedelta(hours=8)
    assert client.session.get_expiry_age() == 8 * 60 * 60


def test_a_visitor_without_a_session_gets_none(client):
    response = client.get("/checkout/")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies


def test_a_superuser_sees_the_lock_and_lifts_it_in_the_admin(
    client, admin_client, staff
):
    from axes.models import AccessAttempt

    for number in range(10):
        attempt(client, f"wrong-{number}")
    assert attempt(client, PASSWORD).status_code == 429

    listing = admin_client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert "203.0.113.7" in listing.content.decode()
    lock = AccessAttempt.objects.get(username="ops")
    response = admin_client.post(
        f"/admin/axes/accessattempt/{lock.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert attempt(client, PASSWORD).status_code == 302


def test_only_superusers_see_failed_logins(client, staff, django_user_model):
    support = django_user_model.objects.create_user(
        "support", password=PASSWORD, is_staff=True
    )
    client.force_login(support)
    assert client.get("/admin/axes/accessattempt/").status_code == 403
