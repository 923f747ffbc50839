"""The payments domain: plans, payments, their timeline, refunds and deliveries.

No business logic lives here: every change goes through payments.services.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from gateways.money import currency_problem, precision_problem, to_provider

from .clock import ClockDateTimeField
from .states import PaymentStatus, RefundStatus

MONEY = {"max_digits": 16, "decimal_places": 3}
ZERO = Decimal("0")


def new_ref_id() -> str:
    """Return an unguessable public reference (24 chars of [A-Za-z0-9_-])."""
    return secrets.token_urlsafe(18)


def new_refund_id() -> str:
    """Return our idempotency id for a refund (sent as the provider's txn id)."""
    return "rf_" + secrets.token_urlsafe(15)


class Plan(models.Model):
    """An eSIM data plan offered at checkout."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=255, blank=True)
    price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="plan_price_positive")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a price a customer could not be charged in its currency."""
        errors = {}
        if self.currency:
            self.currency = self.currency.strip().upper()
            problem = currency_problem(self.currency)
            if problem:
                errors["currency"] = problem
        if self.price is not None:
            if self.price <= 0:
                errors["price"] = "must be greater than zero"
            elif "currency" not in errors and self.currency:
                problem = precision_problem(self.price, self.currency)
                if problem:
                    errors["price"] = problem
        if errors:
            raise ValidationError(errors)

    @property
    def price_text(self) -> str:
        """Format the price at its currency's precision, e.g. "1500 JPY"."""
        return f"{to_provider(self.price, self.currency)} {self.currency}"

    @property
    def sellable(self) -> bool:
        """Tell whether checkout can charge this plan's price."""
        try:
            self.clean()
        except ValidationError:
            return False
        return self.active


class PlanPriceChange(models.Model):
    """Who changed a plan's price, when, from what to what (append-only)."""

    plan = models.ForeignKey(
        Plan, on_delete=models.CASCADE, related_name="price_changes"
    )
    old_price = models.DecimalField(**MONEY, null=True, blank=True)
    old_currency = models.CharField(max_length=3, blank=True)
    new_price = models.DecimalField(**MONEY)
    new_currency = models.CharField(max_length=3)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    changed_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.plan_id}: {self.old_price} -> {self.new_price}"


class PaidVia(models.TextChoices):
    """How a payment was first learned to be paid (watched for webhook silence)."""

    NOTIFICATION = "notification", "Provider notification"
    RETURN = "return", "Payer's return"
    CUSTOMER_POLL = "customer_poll", "Customer's status poll"
    RECONCILER = "reconciler", "Reconciler"
    STAFF = "staff", "Staff refresh"
    OTHER = "other", "Other"


class Payment(models.Model):
    Status = PaymentStatus

    ref_id = models.CharField(
        max_length=40, unique=True, default=new_ref_id, editable=False
    )
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT)
    email = models.EmailField(db_index=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    payment_gateway = models.CharField(max_length=32)
    status = models.CharField(
        max_length=24, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    payment_url = models.URLField(max_length=1000, blank=True)
    gateway_transaction_id = models.CharField(max_length=128, blank=True, db_index=True)
    gateway_session_id = models.CharField(max_length=128, blank=True)
    # Provider values never shown to clients (e.g. MPGS successIndicator).
    gateway_data = models.JSONField(default=dict, blank=True)
    crypto_address = models.CharField(max_length=255, blank=True)
    crypto_amount = models.DecimalField(
        max_digits=30, decimal_places=10, null=True, blank=True
    )
    crypto_currency = models.CharField(max_length=16, blank=True)
    amount_paid = models.DecimalField(**MONEY, default=ZERO)
    amount_refunded = models.DecimalField(**MONEY, default=ZERO)
    # What the payer's bank took back, as the provider last reported it.
    amount_charged_back = models.DecimalField(**MONEY, default=ZERO)
    # How the payment was first learned to be paid (see PaidVia).
    paid_via = models.CharField(max_length=16, choices=PaidVia.choices, blank=True)
    needs_review = models.BooleanField(default=False)
    review_reason = models.TextField(blank=True)
    failure_reason = models.TextField(blank=True)
    date_created = ClockDateTimeField(auto_now_add=True)
    date_updated = ClockDateTimeField(auto_now=True)
    date_paid = models.DateTimeField(null=True, blank=True)
    expiry_datetime = models.DateTimeField(null=True, blank=True)
    # The janitor's schedule (services.checks): scheduled checks only.
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    check_attempts = models.PositiveIntegerField(default=0)
    # The throttle of customer-facing refreshes (status API, return page).
    last_refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        indexes = [
            models.Index(fields=["status", "-date_created"], name="pay_status_created"),
            models.Index(
                fields=["payment_gateway", "status", "-date_created"],
                name="pay_gateway_status_created",
            ),
            # The reconciler's query: open payments due for a check.
            models.Index(
                fields=["payment_gateway", "next_check_at"],
                condition=Q(status="PENDING"),
                name="pay_pending_due",
            ),
            models.Index(
                fields=["expiry_datetime"],
                condition=Q(status="PENDING"),
                name="pay_pending_expiry",
            ),
            models.Index(
                fields=["-date_created"],
                condition=Q(needs_review=True),
                name="pay_needs_review",
            ),
            models.Index(fields=["crypto_address"], name="pay_crypto_address"),
            # The list's search matches these values whatever their case
            # (selectors.payment_search). The e-mail domain search's index,
            # on REVERSE(LOWER(email)), is PostgreSQL's alone: migration 0009.
            models.Index(Lower("ref_id"), name="pay_ref_id_lower"),
            models.Index(Lower("gateway_transaction_id"), name="pay_gateway_txn_lower"),
            models.Index(Lower("crypto_address"), name="pay_crypto_address_lower"),
            # The dashboard's paid-volume figures read only this index.
            models.Index(
                fields=["date_paid"],
                include=["currency", "amount_paid"],
                condition=Q(date_paid__isnull=False),
                name="pay_paid_volume",
            ),
            # Date ranges and the list's order (date, then id: no sort, even
            # deep in the pages); the dashboard's per-gateway status counts
            # read only this index.
            models.Index(
                fields=["date_created", "id"],
                include=["payment_gateway", "status"],
                name="pay_created_id",
            ),
        ]
        # Custom permissions: what each back-office role may do to a payment
        # (granted to groups by `manage.py setup_roles`).
        permissions = [
            ("refresh_payment", "Can refresh a payment from its gateway"),
            ("note_payment", "Can add a note to a payment's timeline"),
            ("refund_payment", "Can refund a payment or record a manual refund"),
            ("resolve_review_payment", "Can resolve a payment flagged for review"),
            ("export_payment", "Can export payments"),
            ("view_settlement", "Can view settlement reports"),
            (
                "repair_payment",
                "Can propose or confirm a repair of a payment the provider "
                "cannot settle",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payment_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0)
                & Q(amount_refunded__lte=models.F("amount_paid")),
                name="payment_refunded_within_paid",
            ),
        ]

    def __str__(self) -> str:
        return self.ref_id

    @property
    def is_paid(self) -> bool:
        return self.date_paid is not None


class EventKind(models.TextChoices):
    CREATED = "CREATED", "Created"
    CHECKOUT = "CHECKOUT", "Checkout opened"
    STATUS_CHANGE = "STATUS_CHANGE", "Status change"
    WEBHOOK = "WEBHOOK", "Webhook"
    REFRESH = "REFRESH", "Refresh"
    RETURN = "RETURN", "Payer returned"
    GATEWAY_ERROR = "GATEWAY_ERROR", "Gateway error"
    REFUND_REQUESTED = "REFUND_REQUESTED", "Refund requested"
    REFUND_SUCCEEDED = "REFUND_SUCCEEDED", "Refund succeeded"
    REFUND_FAILED = "REFUND_FAILED", "Refund failed"
    NOTE = "NOTE", "Note"
    REVIEW_FLAGGED = "REVIEW_FLAGGED", "Flagged for review"
    REVIEW_RESOLVED = "REVIEW_RESOLVED", "Review resolved"
    IGNORED_TRANSITION = "IGNORED_TRANSITION", "Ignored transition"
    CHARGEBACK = "CHARGEBACK", "Chargeback"
    REFUND_APPROVED = "REFUND_APPROVED", "Refund approved"
    REFUND_REJECTED = "REFUND_REJECTED", "Refund rejected"
    REFUND_LAPSED = "REFUND_LAPSED", "Refund lapsed"
    REPAIR_PROPOSED = "REPAIR_PROPOSED", "Repair proposed"
    REPAIR_REJECTED = "REPAIR_REJECTED", "Repair rejected"
    REPAIR = "REPAIR", "Repair"


class PaymentEvent(models.Model):
    """One line of a payment's append-only timeline."""

    Kind = EventKind

    payment = models.ForeignKey(
        Payment, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=24, choices=EventKind.choices)
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    source = models.CharField(max_length=64, default="system")
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["payment", "created_at"], name="event_payment_time")
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.kind}"


class RefundSource(models.TextChoices):
    BACKOFFICE = "backoffice", "Back office"
    PROVIDER = "provider", "Provider (made outside the back office)"


class Refund(models.Model):
    Status = RefundStatus
    Source = RefundSource

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds"
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=24, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    # Money returned outside the provider (recorded, never sent), also while
    # it awaits approval.
    manual = models.BooleanField(default=False)
    idempotency_id = models.CharField(max_length=64, unique=True, default=new_refund_id)
    gateway_refund_id = models.CharField(max_length=128, blank=True)
    # A refund the provider reports that nobody here sent (e.g. made in its
    # portal) is a row of its own, so the payment's refunded total is always
    # the sum of its refund rows.
    source = models.CharField(
        max_length=16, choices=RefundSource.choices, default=RefundSource.BACKOFFICE
    )
    reason = models.TextField(blank=True)
    failure_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    # The second person's decision on a refund that awaited approval.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    date_created = ClockDateTimeField(auto_now_add=True)
    date_updated = ClockDateTimeField(auto_now=True)
    date_completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        indexes = [
            models.Index(
                fields=["date_created"],
                condition=Q(status="PENDING"),
                name="refund_pending",
            ),
            models.Index(
                fields=["date_created"],
                condition=Q(status="AWAITING_APPROVAL"),
                name="refund_awaiting",
            ),
            models.Index(fields=["date_completed"], name="refund_completed"),
        ]
        permissions = [
            ("approve_refund", "Can approve or reject a refund awaiting approval")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="refund_amount_positive"
            ),
            # Four eyes: whoever asked for a refund never decides on it.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True)
                | ~Q(decided_by=models.F("requested_by")),
                name="refund_decided_by_another",
            ),
        ]

    def __str__(self) -> str:
        return self.idempotency_id


class RepairStatus(models.TextChoices):
    PROPOSED = "PROPOSED", "Proposed"
    CONFIRMED = "CONFIRMED", "Confirmed"
    REJECTED = "REJECTED", "Rejected"


class PaymentRepair(models.Model):
    """A final status proposed by one person for a stuck payment, decided by another.

    Written only by services.repairs; a confirmed repair changes the payment
    through the one transition service.
    """

    Status = RepairStatus

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="repairs"
    )
    from_status = models.CharField(max_length=24, choices=PaymentStatus.choices)
    to_status = models.CharField(max_length=24, choices=PaymentStatus.choices)
    reason = models.TextField()
    status = models.CharField(
        max_length=16, choices=RepairStatus.choices, default=RepairStatus.PROPOSED
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        constraints = [
            # One open proposal per payment.
            models.UniqueConstraint(
                fields=["payment"],
                condition=Q(status="PROPOSED"),
                name="repair_one_open_per_payment",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="repair_reason_given"),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True)
                | ~Q(decided_by=models.F("proposed_by")),
                name="repair_decided_by_another",
            ),
        ]

    def __str__(self) -> str:
        return f"repair #{self.pk}: {self.from_status} -> {self.to_status}"


class RollupFact(models.TextChoices):
    """What a dashboard rollup counts, each on the local date of its own moment."""

    PAID = "paid", "Paid (by date paid)"
    CREATED = "created", "Created (by date created, per status)"
    REFUNDED = "refunded", "Refunded (by date completed)"


class DailyRollup(models.Model):
    """One local day of one dashboard fact, per gateway and currency (and status).

    Written only by `services.rollups`, which recomputes whole days and
    replaces their rows; nothing updates a row when a payment changes.
    `amount` is the sum of `amount_paid` (PAID), of `amount` (CREATED: what
    the payments created that day were for) or of the refunds (REFUNDED).
    """

    Fact = RollupFact

    fact = models.CharField(max_length=16, choices=RollupFact.choices)
    day = models.DateField()
    payment_gateway = models.CharField(max_length=32)
    currency = models.CharField(max_length=3)
    # The payments' current status for CREATED; empty for the other facts.
    status = models.CharField(max_length=24, blank=True)
    count = models.PositiveIntegerField()
    # Room for a day of sums of MONEY amounts.
    amount = models.DecimalField(max_digits=24, decimal_places=3)

    class Meta:
        ordering = ["-day", "fact", "payment_gateway", "currency", "status"]
        constraints = [
            models.UniqueConstraint(
                fields=["fact", "day", "payment_gateway", "currency", "status"],
                name="rollup_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.fact} {self.day} {self.payment_gateway} {self.currency}"


class RollupDay(models.Model):
    """A local day whose rollups were recomputed: when, and in which time zone.

    Its row is also the lock that serialises two recomputations of the day.
    A day is read from its rollups only once they were recomputed after it
    ended, in the current TIME_ZONE; until then it is aggregated live.
    """

    day = models.DateField(unique=True)
    computed_at = models.DateTimeField()
    time_zone = models.CharField(max_length=64)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day} at {self.computed_at:%Y-%m-%d %H:%M}"


class DeliveryOutcome(models.TextChoices):
    RECEIVED = "RECEIVED", "Received"
    APPLIED = "APPLIED", "Applied"
    DUPLICATE = "DUPLICATE", "Duplicate"
    REJECTED = "REJECTED", "Rejected (signature)"
    IGNORED = "IGNORED", "Ignored"
    UNMATCHED = "UNMATCHED", "No matching payment"
    REVIEW = "REVIEW", "Parked for review"
    ERROR = "ERROR", "Error"


class WebhookDelivery(models.Model):
    """Every inbound provider call, raw, before anything acts on it."""

    Outcome = DeliveryOutcome

    class SecretUsed(models.TextChoices):
        CURRENT = "current", "current secret"
        PREVIOUS = "previous", "previous secret (*_PREVIOUS)"

    gateway = models.CharField(max_length=32)
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    # Set when only the start of the body is kept (a delivery that failed
    # verification): its full length in bytes and the SHA-256 of all of it.
    body_length = models.PositiveIntegerField(null=True, blank=True)
    body_sha256 = models.CharField("body SHA-256", max_length=64, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    signature_valid = models.BooleanField(null=True)
    # Which configured webhook secret verified it ("" when none did).
    secret_used = models.CharField(
        max_length=16, choices=SecretUsed.choices, blank=True
    )
    # NULL, not "", when absent: the unique constraint applies only to real ids.
    provider_event_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    outcome = models.CharField(
        max_length=16, choices=DeliveryOutcome.choices, default=DeliveryOutcome.RECEIVED
    )
    error = models.TextField(blank=True)
    payment = models.ForeignKey(
        Payment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    received_at = ClockDateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        permissions = [
            ("reprocess_webhookdelivery", "Can re-process a webhook delivery")
        ]
        indexes = [
            # /metrics counts deliveries by gateway and outcome from this index.
            models.Index(fields=["gateway", "outcome"], name="delivery_gateway_outcome")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "provider_event_id"],
                condition=Q(provider_event_id__isnull=False),
                name="delivery_event_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway} #{self.pk}"

    @property
    def body_truncated(self) -> bool:
        """Tell whether only the start of the body was kept."""
        return self.body_length is not None and bool(self.body_sha256)


class IdempotencyRecord(models.Model):
    """The first answer given to a POST /api/payments/ Idempotency-Key."""

    key = models.CharField(max_length=255, unique=True)
    fingerprint = models.CharField(max_length=64)
    payment = models.ForeignKey(Payment, null=True, on_delete=models.SET_NULL)
    response_status = models.PositiveSmallIntegerField(null=True)
    # Text, not JSON: the replay must be byte-identical (jsonb reorders keys).
    response_body = models.TextField(blank=True)
    created_at = ClockDateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class ReconciliationRun(models.Model):
    """One sweep of open payments against the providers."""

    started_at = ClockDateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=32, default="schedule")
    checked = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # What went wrong, per provider (outages, bad batches); empty when nothing did.
    message = models.TextField("error summary", blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation #{self.pk} ({self.trigger})"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (XLSX)"


class ExportStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"
    EXPIRED = "EXPIRED", "Expired (file deleted)"


class ExportJob(models.Model):
    """A payment export too large for a request, written by a django-q2 task.

    The filters are kept exactly as given (the changelist's query string), not
    as a list of ids: the task asks the payment admin for the same rows.
    """

    Format = ExportFormat
    Status = ExportStatus

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    filters = models.TextField(blank=True)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(default=0)
    expected_rows = models.PositiveIntegerField(null=True, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to="exports/", max_length=255, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = ClockDateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(status="DONE"),
                name="export_done_expiry",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="export_progress_percent"
            )
        ]

    def __str__(self) -> str:
        return f"export #{self.pk} ({self.format})"

    @property
    def duration(self):
        """Time from start to finish (None while it runs)."""
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
