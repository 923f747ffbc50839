"""django-q2 schedules may only run the project's own tasks, superusers included."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django_q.models import Schedule

from payments.services import schedulable_tasks, schedule_validate
from payments.tasks import SCHEDULABLE_TASKS

pytestmark = pytest.mark.django_db

ADD_URL = "admin:django_q_schedule_add"


def schedule_form(**fields) -> dict:
    data = {
        "name": "evil",
        "func": "payments.tasks.expire_overdue",
        "hook": "",
        "args": "",
        "kwargs": "",
        "schedule_type": Schedule.MINUTES,
        "minutes": "1",
        "repeats": "-1",
        "next_run_0": "2026-11-29",
        "next_run_1": "10:00:00",
        "cron": "",
        "cluster": "",
        "intended_date_kwarg": "",
    }
    data.update(fields)
    return data


def test_the_allow_list_is_the_project_tasks():
    assert sorted(schedulable_tasks(allowed=SCHEDULABLE_TASKS)) == [
        "payments.tasks.expire_overdue",
        "payments.tasks.lapse_refund_approvals",
        "payments.tasks.prune_audit_log",
        "payments.tasks.prune_rejected_deliveries",
        "payments.tasks.purge_exports",
        "payments.tasks.reconcile_pending",
        "payments.tasks.reconcile_refunds",
        "payments.tasks.refresh_rollups",
    ]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"func": "os.system", "args": "'touch /tmp/pwned'"}, "func", "not an allowed"),
        ({"func": "subprocess.run"}, "func", "not an allowed"),
        ({"func": "payments.tasks.enqueue_reconciliation"}, "func", "not an allowed"),
        ({"func": " payments.tasks.logger.warning"}, "func", "not an allowed"),
        ({"hook": "os.system"}, "hook", "hooks are not allowed"),
        ({"kwargs": "{'hook': 'os.system'}"}, "kwargs", "does not fit"),
        ({"kwargs": "q_options={'hook': 'os.system'}"}, "kwargs", "does not fit"),
        ({"kwargs": "chain=[('os.system', ('id',))]"}, "kwargs", "does not fit"),
        ({"kwargs": "__import__('os').system('id')"}, "kwargs", "literals"),
        ({"args": "__import__('os')"}, "args", "literals"),
        ({"args": "1, 2, 3"}, "args", "does not fit"),
        ({"intended_date_kwarg": "hook"}, "kwargs", "does not fit"),
    ],
)
def test_admin_refuses_anything_but_a_project_task(
    admin_client, fields, field, message
):
    response = admin_client.post(reverse(ADD_URL), schedule_form(**fields))

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not Schedule.objects.exists()


def test_admin_saves_a_project_task_with_fitting_arguments(admin_client):
    response = admin_client.post(
        reverse(ADD_URL),
        schedule_form(
            func="payments.tasks.reconcile_refunds", kwargs="min_age_seconds=120"
        ),
    )

    assert response.status_code == 302
    assert Schedule.objects.get().func == "payments.tasks.reconcile_refunds"


def test_model_level_guard_holds_outside_the_admin():
    with pytest.raises(ValidationError, match="not an allowed task"):
        Schedule.objects.create(name="x", func="os.system", args="'id'")
    with pytest.raises(ValidationError, match="hooks are not allowed"):
        Schedule.objects.create(
            name="x", func="payments.tasks.expire_overdue", hook="os.system"
        )
    schedule = Schedule.objects.create(name="ok", func="payments.tasks.expire_overdue")
    schedule.func = "builtins.exec"
    with pytest.raises(ValidationError):
        schedule.save()
    assert Schedule.objects.get().func == "payments.tasks.expire_overdue"


def test_setup_schedules_passes_the_guard(capsys):
    call_command("setup_schedules")
    call_command("setup_schedules")
    assert Schedule.objects.count() == 8
    assert set(Schedule.objects.values_list("func", flat=True)) == set(
        schedulable_tasks(allowed=SCHEDULABLE_TASKS)
    )


def test_kwargs_in_both_of_django_q2s_syntaxes_are_accepted():
    schedule_validate(
        allowed=SCHEDULABLE_TASKS,
        func="payments.tasks.reconcile_pending",
        kwargs="{'limit': 10}",
    )
    schedule_validate(
        allowed=SCHEDULABLE_TASKS,
        func="payments.tasks.reconcile_pending",
        kwargs="limit=10",
    )
    schedule_validate(
        allowed=SCHEDULABLE_TASKS, func="payments.tasks.reconcile_pending", args="5"
    )


def test_task_records_are_read_only_even_for_superusers(admin_client):
    for model in ("success", "failure"):
        assert (
            admin_client.get(reverse(f"admin:django_q_{model}_add")).status_code == 403
        )
        page = admin_client.get(reverse(f"admin:django_q_{model}_changelist"))
        assert page.status_code == 200
        assert "resubmit" not in page.content.decode().lower()
