"""The alerting rules in docs/prometheus-alerts.yml read what /metrics exports.

Issue 22, case 9. Every rule's expression names metrics, and each of them is
one the app exports (read from a real scrape, by its `# TYPE` lines); the
runbook has a section per alert. The figures behind the rules tell the truth.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from payments import services
from payments.models import (
    ExportJob,
    ExportStatus,
    Payment,
    ReconciliationRun,
    Refund,
    RefundStatus,
    WebhookDelivery,
)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "prometheus-alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
TOKEN = "metrics-token-for-tests-0123456789"
# Prometheus's own series (not the app's): a failed scrape sets up to 0.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}
# Every situation the issue names, and the rule that covers it.
WANTED = {
    "payments pending past their expiry": "PaymentsPendingPastExpiry",
    "reconciliation lag": "ReconciliationLagging",
    "failed reconciliation runs": "ReconciliationRunsFailing",
    "webhook rejections per gateway": "WebhookRejections",
    "webhook silence per gateway": "WebhookSilence",
    "refunds stuck pending": "RefundsStuckPending",
    "refunds awaiting approval": "RefundsAwaitingApproval",
    "export failures": "ExportsFailing",
    "the health check failing": "HealthCheckFailing",
}


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Return the series an expression reads (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # groupings
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("("):
            continue  # a function: sum(...), time()
        if match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def exported_series(client, settings) -> set[str]:
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    series = set()
    for line in response.content.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            series.add(name)
            if kind == "counter":
                series.update({f"{name}_total", f"{name}_created"})
    return series


def test_the_metric_name_reader_skips_functions_labels_and_keywords():
    expr = 'sum by (gateway) (rate(a_total{x="y(z)"}[5m])) > 0 or on (g) b == bool 1'
    assert metric_names(expr) == {"a_total", "b"}


def test_every_situation_of_the_issue_has_a_rule():
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert set(WANTED.values()) <= set(names)


@pytest.mark.django_db
def test_every_rule_reads_only_metrics_the_app_exports(client, settings):
    exported = exported_series(client, settings)
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} names no metric"
        unknown = names - exported - PROMETHEUS_SERIES
        assert not unknown, f"{rule['alert']} reads {unknown}, not in /metrics"


def test_the_runbook_says_what_to_do_for_every_alert():
    headings = {
        line.lstrip("#").strip()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        assert rule["alert"] in headings, f"docs/runbook.md has no {rule['alert']}"
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{anchor}"
        assert rule["annotations"]["summary"]


# --- the figures behind the rules -----------------------------------------------------


def scrape(client, settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    ).content.decode()


def sample(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


@pytest.mark.django_db
def test_the_alerting_figures_tell_the_truth(
    client, settings, plan, sandbox, admin_user
):
    now = timezone.now()
    overdue = services.payment_create(
        plan=plan, gateway_code="sandbox", email="a@b.io", site_url="http://t"
    )
    Payment.objects.filter(pk=overdue.pk).update(
        expiry_datetime=now - timedelta(minutes=5)
    )
    services.payment_create(
        plan=plan, gateway_code="sandbox", email="b@b.io", site_url="http://t"
    )  # pending, not overdue
    paid = services.payment_create(
        plan=plan, gateway_code="sandbox", email="c@b.io", site_url="http://t"
    )
    body, headers = sandbox.choose(paid.gateway_session_id, "paid")
    services.webhook_ingest(
        gateway_code="sandbox", body=body, headers=headers, remote_addr="127.0.0.1"
    )
    refund = Refund.objects.create(
        payment=paid,
        idempotency_id="r-stuck",
        amount=Decimal("1.00"),
        currency=paid.currency,
        status=RefundStatus.PENDING,
    )
    Refund.objects.filter(pk=refund.pk).update(date_created=now - timedelta(hours=2))
    for _ in range(2):
        services.webhook_ingest(
            gateway_code="sandbox",
            body=b"{}",
            headers={"X-Sandbox-Signature": "t=1,v1=00"},
            remote_addr="203.0.113.9",
        )
    ExportJob.objects.create(
        requested_by=admin_user, status=ExportStatus.FAILED, format="csv"
    )
    old = ReconciliationRun.objects.create(trigger="schedule")
    ReconciliationRun.objects.filter(pk=old.pk).update(
        started_at=now - timedelta(minutes=40)
    )

    text = scrape(client, settings)

    assert sample(text, 'payments_pending_past_expiry{gateway="sandbox"}') == 1
    assert sample(text, 'refunds{status="PENDING"}') == 1
    assert sample(text, 'refunds{status="SUCCEEDED"}') == 0
    age = sample(text, 'refunds_open_oldest_age_seconds{status="PENDING"}')
    assert 7200 <= age < 7300
    assert sample(text, 'webhook_rejected_recent{gateway="sandbox"}') == 2
    assert WebhookDelivery.objects.filter(signature_valid=False).count() == 2
    assert sample(text, "export_jobs_failed_recent") == 1
    assert sample(text, 'reconciliation_runs_recent{outcome="unfinished"}') == 1
    assert sample(text, 'reconciliation_runs_recent{outcome="ok"}') == 0
    for check in ("database", "cache", "broker"):
        assert sample(text, f'health_check{{check="{check}"}}') == 1


@pytest.mark.django_db
def test_a_failing_health_check_is_exported_as_0(client, settings, monkeypatch):
    from payments.services import health

    def broken():
        raise RuntimeError("the broker did not answer")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    text = scrape(client, settings)
    assert sample(text, 'health_check{check="broker"}') == 0
    assert sample(text, 'health_check{check="database"}') == 1
