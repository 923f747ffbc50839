"""A real `manage.py qcluster` writes a 50,000-row export in the background.

Finance asks for the export in the admin (above EXPORT_SYNC_LIMIT, so it
becomes an ExportJob); the cluster, a separate process on the same database
and media folder, writes the file while this test watches the job's
percentage from outside, as the admin page does.
"""

from __future__ import annotations

import csv
import io
import time
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from openpyxl import load_workbook

from payments.models import ExportJob, ExportStatus, Payment, Plan
from payments.roles import roles_setup
from payments.services import exports
from tests.payments.jobs.test_qcluster import start_cluster, stop_cluster

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROWS = 50_000


def load_payments(count: int) -> None:
    plan = Plan.objects.create(
        code="big", name="Big 10 GB", price="19.00", currency="USD"
    )
    # Fresh PENDING payments: the rows' statuses do not matter to the export's
    # size, and reaching others would mean 50,000 trips through the services.
    batch = []
    for i in range(count):
        batch.append(
            Payment(
                plan=plan,
                email=f"user{i % 997}@example.com",
                amount=Decimal("19.00"),
                currency="USD",
                payment_gateway=("mpgs", "coinpayments", "sandbox")[i % 3],
                gateway_transaction_id=f"TX{i:06d}",
            )
        )
        if len(batch) == 5000:
            Payment.objects.bulk_create(batch)
            batch = []
    Payment.objects.bulk_create(batch)


def test_a_real_cluster_writes_a_large_export_with_progress(
    client, settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = str(tmp_path)
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))
    load_payments(ROWS)
    roles_setup()
    finance = User.objects.create_user("fiona", is_staff=True)
    finance.groups.add(Group.objects.get(name="Finance"))
    client.force_login(finance)
    url = reverse("admin:payments_payment_export")
    for fmt in ("0", "1"):  # CSV, then XLSX
        response = client.post(url, {"format": fmt, "resource": "0"})
        assert response.status_code == 302  # to the job's page: too many for a request
    jobs = list(ExportJob.objects.order_by("id"))
    assert [job.format for job in jobs] == ["csv", "xlsx"]
    assert all(job.status == ExportStatus.QUEUED and job.progress == 0 for job in jobs)

    observed: dict[int, list[int]] = {job.pk: [job.progress] for job in jobs}
    cluster = start_cluster()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            states = dict(ExportJob.objects.values_list("pk", "status"))
            for pk, progress in ExportJob.objects.values_list("pk", "progress"):
                if progress != observed[pk][-1]:
                    observed[pk].append(progress)
            if all(
                s in (ExportStatus.DONE, ExportStatus.FAILED) for s in states.values()
            ):
                break
            time.sleep(0.01)
    finally:
        log = stop_cluster(cluster)
    print("observed progress (csv, xlsx):", list(observed.values()))

    csv_job, xlsx_job = ExportJob.objects.order_by("id")
    for job in (csv_job, xlsx_job):
        assert job.status == ExportStatus.DONE, f"{job.error}\n{log[-3000:]}"
        assert job.row_count == job.expected_rows == ROWS
        values = observed[job.pk]
        assert values[0] == 0 and values[-1] == 100, values
        assert values == sorted(values), values  # never goes back
        assert job.started_at <= job.finished_at and job.file_size > 0
    # The XLSX job takes long enough to be seen on its way.
    assert any(0 < value < 100 for value in observed[xlsx_job.pk]), observed

    with csv_job.file.open("rb") as handle:
        reader = csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        header = next(reader)
        lines = sum(1 for _ in reader)
    assert header == list(exports.HEADERS)
    assert lines == ROWS

    with xlsx_job.file.open("rb") as handle:
        sheet = load_workbook(handle, read_only=True).worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        assert list(next(rows)) == list(exports.HEADERS)
        assert sum(1 for _ in rows) == ROWS

    download = client.get(
        reverse("admin:payments_exportjob_download", args=[xlsx_job.pk])
    )
    assert download.status_code == 200
