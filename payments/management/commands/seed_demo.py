"""Fill a development database with plans, demo staff and realistic payments."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from gateways.money import quantize
from gateways.registry import ADAPTERS
from payments.models import EventKind, Payment, PaymentEvent, Plan, Refund, RefundStatus
from payments.roles import roles_setup
from payments.states import PaymentStatus as S

DEMO_DOMAIN = "demo.magic-esim.test"
PLANS = (
    ("eu-1gb-7d", "Europe 1 GB / 7 days", "9.00", "EUR"),
    ("eu-5gb-30d", "Europe 5 GB / 30 days", "24.00", "EUR"),
    ("global-3gb-15d", "Global 3 GB / 15 days", "19.00", "USD"),
    ("global-10gb-30d", "Global 10 GB / 30 days", "49.00", "USD"),
    ("uk-2gb-15d", "UK 2 GB / 15 days", "8.50", "GBP"),
    ("gcc-5gb-30d", "Gulf 5 GB / 30 days", "75.00", "SAR"),
    ("uae-3gb-15d", "UAE 3 GB / 15 days", "55.00", "AED"),
)
# Documented in README.md: demo only, refused when DEBUG is off. Only `admin`
# is a superuser; the others hold their role's group and nothing else.
STAFF = (
    ("admin", "demo-admin-2026", None),
    ("support", "demo-support-2026", "Support"),
    ("operator", "demo-operator-2026", "Operator"),
    ("finance", "demo-finance-2026", "Finance"),
    # The second person of four-eyes refunds (REFUND_APPROVAL_LIMITS): with
    # `operator` asking, `approver` decides.
    ("approver", "demo-approver-2026", "Approver"),
)
STATUS_WEIGHTS = (
    (S.COMPLETED, 62),
    (S.PENDING, 6),
    (S.FAILED, 12),
    (S.EXPIRED, 10),
    (S.PARTIALLY_REFUNDED, 4),
    (S.REFUNDED, 6),
    (S.VOIDED, 1),
)
GATEWAYS = (("mpgs", 55), ("coinpayments", 25), ("sandbox", 20))
FIRST = (
    "amira",
    "li",
    "jonas",
    "sara",
    "omar",
    "lucia",
    "noah",
    "fatima",
    "mateo",
    "yuki",
)
LAST = ("haddad", "chen", "muller", "rossi", "khan", "garcia", "smith", "sato", "silva")


def progress(stream, done: int, total: int, label: str) -> None:
    """Draw a one-line progress bar."""
    width = 30
    filled = int(width * done / max(total, 1))
    stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        stream.write("\n")
    stream.flush()


class Command(BaseCommand):
    help = "Seed demo plans, staff accounts and ~2,000 payments (DEBUG only)."

    def add_arguments(self, parser):
        parser.add_argument("--payments", type=int, default=2000)
        parser.add_argument(
            "--if-empty", action="store_true", help="skip if any payment exists"
        )
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, payments: int, if_empty: bool, seed: int, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates known passwords: it runs only with DEBUG on"
            )
        plans = self._plans()
        self._staff()
        if Payment.objects.filter(email__endswith=f"@{DEMO_DOMAIN}").exists() or (
            if_empty and Payment.objects.exists()
        ):
            self.stdout.write("demo payments already present: nothing to add")
            return
        self._payments(plans, payments, random.Random(seed))

    def _plans(self) -> list[Plan]:
        plans = []
        for order, (code, name, price, currency) in enumerate(PLANS):
            plan, _ = Plan.objects.update_or_create(
                code=code,
                defaults={
                    "name": name,
                    "price": Decimal(price),
                    "currency": currency,
                    "sort_order": order,
                    "active": True,
                },
            )
            plans.append(plan)
        self.stdout.write(f"{len(plans)} plans ready")
        return plans

    def _staff(self) -> None:
        User = get_user_model()
        roles_setup()
        for username, password, role in STAFF:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@{DEMO_DOMAIN}"}
            )
            user.is_staff = True
            user.is_superuser = role is None
            if created:
                user.set_password(password)
            user.save()
            user.groups.set(Group.objects.filter(name=role) if role else [])
        self.stdout.write(
            "staff accounts: "
            + ", ".join(f"{u} ({role or 'superuser'})" for u, _, role in STAFF)
        )

    @transaction.atomic
    def _payments(self, plans: list[Plan], total: int, rng: random.Random) -> None:
        now = timezone.now()
        statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
        gateways = [g for g, w in GATEWAYS for _ in range(w)]
        batch = 250
        for start in range(0, total, batch):
            rows = []
            for _ in range(min(batch, total - start)):
                rows.append(
                    self._one(
                        plans, rng, now, rng.choice(statuses), rng.choice(gateways)
                    )
                )
            # bulk_create stamps auto_now_add fields with now: keep the intended
            # dates aside and write them back afterwards.
            when = [p.date_created for p, _, _ in rows]
            created = Payment.objects.bulk_create([p for p, _, _ in rows])
            for payment, date in zip(created, when, strict=True):
                payment.date_created = payment.date_updated = date
            Payment.objects.bulk_update(created, ["date_created", "date_updated"])
            events, refunds = [], []
            for payment, (_, make_events, make_refunds) in zip(
                created, rows, strict=True
            ):
                events += make_events(payment)
                refunds += make_refunds(payment)
            made = PaymentEvent.objects.bulk_create([e for e, _ in events])
            for event, (_, when) in zip(made, events, strict=True):
                event.created_at = when
            PaymentEvent.objects.bulk_update(made, ["created_at"])
            Refund.objects.bulk_create(refunds)
            progress(self.stdout, start + len(rows), total, "payments")
        self.stdout.write(self.style.SUCCESS(f"seeded {total} demo payments"))

    def _one(self, plans, rng, now, status, gateway):
        plan = rng.choice(plans)
        created = now - timedelta(seconds=rng.randint(60, 90 * 24 * 3600))
        if status == S.PENDING:
            created = now - timedelta(minutes=rng.randint(1, 50))
        name = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}"
        paid_at = created + timedelta(seconds=rng.randint(40, 900))
        adapter = import_string(ADAPTERS[gateway])
        if status == S.VOIDED and not adapter.supports_refunds:
            status = S.COMPLETED  # only card gateways void a capture
        voided = status == S.VOIDED
        is_paid = status in (S.COMPLETED, S.PARTIALLY_REFUNDED, S.REFUNDED)
        refunded = Decimal("0")
        if status == S.REFUNDED:
            refunded = plan.price
        elif status == S.PARTIALLY_REFUNDED:
            refunded = quantize(
                plan.price * Decimal(rng.choice(("0.25", "0.5"))), plan.currency
            )
        ref = Payment(
            plan=plan,
            email=f"{name}@{DEMO_DOMAIN}",
            amount=plan.price,
            currency=plan.currency,
            payment_gateway=gateway,
            status=status,
            payment_url="https://example.invalid/pay",
            gateway_transaction_id=f"{gateway[:3].upper()}-{rng.getrandbits(48):012x}",
            amount_paid=plan.price if is_paid else Decimal("0"),
            amount_refunded=refunded,
            date_paid=paid_at if is_paid else None,
            expiry_datetime=created + timedelta(hours=1),
            last_checked_at=paid_at,
            failure_reason={
                S.FAILED: "declined by issuer",
                S.EXPIRED: "payment window ended",
            }.get(status, ""),
        )
        ref.date_created = created
        if adapter.choices_field == "crypto_currency":
            ref.crypto_currency = "BTC"
            ref.crypto_amount = (plan.price / Decimal("60000")).quantize(
                Decimal("1e-8")
            )
            ref.crypto_address = f"bc1q{rng.getrandbits(120):030x}"
        needs_review = status == S.COMPLETED and rng.random() < 0.03
        if needs_review:
            ref.needs_review = True
            ref.review_reason = "late payment: provider reported success after EXPIRED"
        if voided:
            needs_review = True
            ref.needs_review = True
            ref.review_reason = "voided at the provider after capture: check delivery"

        def make_events(payment):
            source = f"webhook:{gateway}"
            out = [
                (
                    PaymentEvent(
                        payment=payment,
                        kind=EventKind.CREATED,
                        source="api",
                        message=f"{plan.name} via {gateway}",
                    ),
                    created,
                ),
                (
                    PaymentEvent(
                        payment=payment,
                        kind=EventKind.CHECKOUT,
                        source="api",
                        message="checkout opened",
                    ),
                    created + timedelta(seconds=1),
                ),
            ]
            if status == S.PENDING:
                return out
            captured = is_paid or voided
            final = S.COMPLETED if captured else status
            when = paid_at if captured else created + timedelta(hours=1, minutes=2)
            out.append(
                (
                    PaymentEvent(
                        payment=payment,
                        kind=EventKind.WEBHOOK,
                        source=source,
                        message=f"reported {final}",
                    ),
                    when,
                )
            )
            out.append(
                (
                    PaymentEvent(
                        payment=payment,
                        kind=EventKind.STATUS_CHANGE,
                        source=source,
                        from_status=S.PENDING,
                        to_status=final,
                    ),
                    when,
                )
            )
            if voided:
                when += timedelta(hours=rng.randint(1, 6))
                out.append(
                    (
                        PaymentEvent(
                            payment=payment,
                            kind=EventKind.STATUS_CHANGE,
                            source=source,
                            from_status=S.COMPLETED,
                            to_status=S.VOIDED,
                            message="order CANCELLED: voided",
                        ),
                        when,
                    )
                )
            if needs_review:
                out.append(
                    (
                        PaymentEvent(
                            payment=payment,
                            kind=EventKind.REVIEW_FLAGGED,
                            source=source,
                            message=payment.review_reason,
                        ),
                        when,
                    )
                )
            if refunded:
                later = when + timedelta(days=rng.randint(1, 5))
                out.append(
                    (
                        PaymentEvent(
                            payment=payment,
                            kind=EventKind.REFUND_SUCCEEDED,
                            source="admin",
                            message=f"refund of {refunded} {plan.currency} succeeded",
                        ),
                        later,
                    )
                )
                out.append(
                    (
                        PaymentEvent(
                            payment=payment,
                            kind=EventKind.STATUS_CHANGE,
                            source="admin",
                            from_status=S.COMPLETED,
                            to_status=status,
                        ),
                        later,
                    )
                )
            return out

        def make_refunds(payment):
            if not refunded:
                return []
            manual = not adapter.supports_refunds
            return [
                Refund(
                    payment=payment,
                    amount=refunded,
                    currency=plan.currency,
                    status=RefundStatus.MANUAL if manual else RefundStatus.SUCCEEDED,
                    manual=manual,
                    reason="customer request",
                    date_completed=paid_at + timedelta(days=2),
                )
            ]

        return ref, make_events, make_refunds
