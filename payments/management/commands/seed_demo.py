"""Fill a development database with plans, demo staff and a history that happened.

Every payment is made by the real services under a controlled clock
(`payments.clock.set_to`): created through `payment_create` against the
sandbox or the fake CoinPayments/MPGS (`fakeproviders`, started in this
process on the demo's providers port), paid, declined or left to expire by
what the provider then says (signed notifications through `webhook_ingest`,
expiry through `payment_expire_overdue`), refunded through `refund_request`,
reviewed and reconciled by the services that do it in production. So every
timeline, review reason, refund and reconciliation run is what happened. The
fake's records are saved to the state file `make run`'s fake loads, so the
demo's Refresh, refunds and reconciliation find the seeded payments.
"""

from __future__ import annotations

import copy
import logging
import random
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from gateways import registry
from gateways.money import quantize
from gateways.registry import ADAPTERS
from payments import clock, services
from payments.models import Payment, Plan
from payments.roles import roles_setup
from payments.services import Actor

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
# What happens to an ordinary payment, by weight.
OUTCOMES = (
    ("paid", 64),
    ("declined", 9),
    ("abandoned", 12),
    ("refunded", 6),
    ("partly_refunded", 4),
    ("late", 1),
)
GATEWAYS = (("mpgs", 50), ("coinpayments", 25), ("sandbox", 25))
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
HISTORY_DAYS = 90
# Where the demo's fake serves (make run: PORT + 1) and the web server it notifies.
DEFAULT_PROVIDERS_PORT = 8001
DEFAULT_SITE_URL = "http://127.0.0.1:8000"


def progress(stream, done: int, total: int, label: str) -> None:
    """Draw a one-line progress bar."""
    width = 30
    filled = int(width * done / max(total, 1))
    stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        stream.write("\n")
    stream.flush()


@dataclass(frozen=True)
class Plot:
    """One payment's story: when it starts, where, and what happens to it."""

    start: datetime
    gateway: str
    outcome: str


class Command(BaseCommand):
    help = "Seed demo plans, staff accounts and ~400 payments made by the services (DEBUG only)."

    def add_arguments(self, parser):
        parser.add_argument("--payments", type=int, default=400)
        parser.add_argument(
            "--if-empty", action="store_true", help="skip if any payment exists"
        )
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument(
            "--providers-port",
            type=int,
            default=DEFAULT_PROVIDERS_PORT,
            help="the port make run's simulated providers use (--port + 1)",
        )
        parser.add_argument(
            "--site-url",
            default=DEFAULT_SITE_URL,
            help="the web server the providers send payers and notifications to",
        )

    def handle(self, *args, payments: int, if_empty: bool, seed: int, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates known passwords: it runs only with DEBUG on"
            )
        plans = self._plans()
        staff = self._staff()
        if Payment.objects.filter(email__endswith=f"@{DEMO_DOMAIN}").exists() or (
            if_empty and Payment.objects.exists()
        ):
            self.stdout.write("demo payments already present: nothing to add")
            return
        if payments <= 0:
            return
        from fakeproviders.demo import demo_server

        fake = demo_server(
            port=_free_or_any(options["providers_port"]), site_url=options["site_url"]
        )
        state = settings.DEMO_PROVIDERS_STATE
        if state:
            fake.load_state(state)
        with fake, override_settings(GATEWAY_SETTINGS=_pointed_at(fake)):
            registry.reset()
            # Each provider call and change is logged at INFO: thousands of lines.
            logging.disable(logging.INFO)
            try:
                History(self, fake, plans, staff, random.Random(seed)).build(
                    payments, options["site_url"]
                )
            finally:
                logging.disable(logging.NOTSET)
                registry.reset()
        if state:
            Path(state).parent.mkdir(parents=True, exist_ok=True)
            fake.save_state(state)
        if fake.port != options["providers_port"]:
            self.stdout.write(
                self.style.WARNING(
                    f"port {options['providers_port']} was busy: the open seeded "
                    "CoinPayments payments name a provider page that make run "
                    "will not serve"
                )
            )

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

    def _staff(self) -> dict[str, object]:
        User = get_user_model()
        roles_setup()
        users = {}
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
            users[username] = user
        self.stdout.write(
            "staff accounts: "
            + ", ".join(f"{u} ({role or 'superuser'})" for u, _, role in STAFF)
        )
        return users


def _free_or_any(port: int) -> int:
    """Return `port` if nothing listens there, else 0 (any free port)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def _pays_in_crypto(code: str) -> bool:
    return import_string(ADAPTERS[code]).choices_field == "crypto_currency"


def _pointed_at(fake) -> dict:
    """Return GATEWAY_SETTINGS with the sandbox on and the providers at `fake`."""
    gateway_settings = copy.deepcopy(settings.GATEWAY_SETTINGS)
    gateway_settings["sandbox"]["enabled"] = True
    for code, values in fake.gateway_settings().items():
        gateway_settings[code].update(values)
    gateway_settings["coinpayments"]["coins"] = ["BTC"]
    return gateway_settings


class History:
    """Make the demo's payments one story at a time, each on its own clock."""

    def __init__(self, command, fake, plans, staff, rng: random.Random):
        self.out = command.stdout
        self.style = command.style
        self.fake = fake
        self.plans = plans
        self.rng = rng
        self.support = Actor("admin", staff["support"])
        self.finance = Actor("admin", staff["finance"])
        self.now = timezone.now().replace(microsecond=0)
        self.site_url = ""

    def build(self, total: int, site_url: str) -> None:
        self.site_url = site_url
        plots = self._plots(total)
        for done, plot in enumerate(plots, 1):
            self._tell(plot)
            if done % 10 == 0 or done == len(plots):
                progress(self.out, done, len(plots), "payments")
        self._reconcile()
        self.out.write(self.style.SUCCESS(f"seeded {len(plots)} demo payments"))

    # the stories ----------------------------------------------------------------------

    def _plots(self, total: int) -> list[Plot]:
        """Return `total` stories: ordinary ones, then the cases support practises."""
        rng, now = self.rng, self.now
        outcomes = [name for name, weight in OUTCOMES for _ in range(weight)]
        gateways = [code for code, weight in GATEWAYS for _ in range(weight)]
        # Support's cases, kept whatever the count (the recent ones last).
        special = [
            Plot(now - timedelta(days=12, hours=3), "coinpayments", "short"),
            Plot(now - timedelta(days=9, hours=5), "coinpayments", "late"),
            Plot(now - timedelta(days=20, hours=2), "mpgs", "chargeback"),
            Plot(now - timedelta(days=6, hours=7), "mpgs", "refund_fails"),
            Plot(now - timedelta(days=15, hours=1), "coinpayments", "manual_refund"),
            Plot(now - timedelta(days=4, hours=2), "mpgs", "forged"),
            Plot(now - timedelta(days=2, hours=9), "coinpayments", "forged"),
            Plot(now - timedelta(days=3, hours=6), "coinpayments", "confirming"),
            Plot(now - timedelta(days=8, hours=4), "mpgs", "voided"),
        ]
        if total < 40:
            special = []  # a small seed (tests) keeps to ordinary stories
        ordinary = []
        recent = max(2, total // 40)
        for _ in range(max(total - len(special) - recent, 0)):
            seconds = rng.randint(2 * 3600, HISTORY_DAYS * 24 * 3600)
            outcome = rng.choice(outcomes)
            gateway = rng.choice(gateways)
            ordinary.append(Plot(now - timedelta(seconds=seconds), gateway, outcome))
        ordinary.sort(key=lambda plot: plot.start)
        pending = [
            Plot(
                now - timedelta(minutes=rng.randint(3, 25)),
                rng.choice(gateways),
                "open",
            )
            for _ in range(min(recent, total - len(special)))
        ]
        return [*ordinary, *special, *pending]

    def _tell(self, plot: Plot) -> None:
        rng = self.rng
        plan = rng.choice(self.plans)
        name = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}"
        with clock.set_to(plot.start):
            payment = services.payment_create(
                plan=plan,
                gateway_code=plot.gateway,
                email=f"{name}@{DEMO_DOMAIN}",
                site_url=self.site_url,
                crypto_currency="BTC" if _pays_in_crypto(plot.gateway) else "",
            )
        provider = PROVIDERS[plot.gateway](self.fake, payment)
        paid_at = plot.start + timedelta(seconds=rng.randint(40, 900))
        expired_at = payment.expiry_datetime + timedelta(seconds=rng.randint(30, 110))
        story = getattr(self, f"_{plot.outcome}")
        story(payment, provider, paid_at, expired_at)

    def _open(self, payment, provider, paid_at, expired_at) -> None:
        """Leave it open: the payer is still on the provider's page."""

    def _paid(self, payment, provider, paid_at, expired_at) -> None:
        with clock.set_to(paid_at):
            provider.pay()

    def _declined(self, payment, provider, paid_at, expired_at) -> None:
        with clock.set_to(paid_at):
            provider.decline()
        if Payment.objects.get(pk=payment.pk).status == Payment.Status.PENDING:
            # The payer gave up after the decline: the window ends.
            self._expire(provider, expired_at)

    def _abandoned(self, payment, provider, paid_at, expired_at) -> None:
        self._expire(provider, expired_at)

    def _late(self, payment, provider, paid_at, expired_at) -> None:
        self._expire(provider, expired_at)
        with clock.set_to(expired_at + timedelta(minutes=self.rng.randint(5, 600))):
            provider.pay(late=True)

    def _refunded(self, payment, provider, paid_at, expired_at) -> None:
        self._paid(payment, provider, paid_at, expired_at)
        self._refund(payment, paid_at, payment.amount, manual=not provider.refunds)

    def _partly_refunded(self, payment, provider, paid_at, expired_at) -> None:
        self._paid(payment, provider, paid_at, expired_at)
        share = Decimal(self.rng.choice(("0.25", "0.5")))
        amount = quantize(payment.amount * share, payment.currency)
        self._refund(payment, paid_at, amount, manual=not provider.refunds)

    def _short(self, payment, provider, paid_at, expired_at) -> None:
        with clock.set_to(paid_at):
            provider.pay(share=Decimal("0.9"))

    def _chargeback(self, payment, provider, paid_at, expired_at) -> None:
        self._paid(payment, provider, paid_at, expired_at)
        with clock.set_to(paid_at + timedelta(days=11, hours=4)):
            provider.charge_back()

    def _refund_fails(self, payment, provider, paid_at, expired_at) -> None:
        self._paid(payment, provider, paid_at, expired_at)
        provider.refuse_next_refund()
        self._refund(payment, paid_at, payment.amount, manual=False)

    def _manual_refund(self, payment, provider, paid_at, expired_at) -> None:
        self._paid(payment, provider, paid_at, expired_at)
        self._refund(payment, paid_at, payment.amount, manual=True)

    def _forged(self, payment, provider, paid_at, expired_at) -> None:
        """Paid; then someone replays the news with a signature that fails."""
        self._paid(payment, provider, paid_at, expired_at)
        with clock.set_to(paid_at + timedelta(minutes=3)):
            provider.forge()

    def _voided(self, payment, provider, paid_at, expired_at) -> None:
        """Paid, then voided the same day at the provider's portal."""
        self._paid(payment, provider, paid_at, expired_at)
        with clock.set_to(paid_at + timedelta(hours=3)):
            provider.void()

    def _confirming(self, payment, provider, paid_at, expired_at) -> None:
        """Coins sent, not yet confirmed: pending for days, held from expiry."""
        with clock.set_to(paid_at):
            provider.send_unconfirmed()

    # staff and jobs ------------------------------------------------------------------

    def _expire(self, provider, when: datetime) -> None:
        provider.time_out()
        with clock.set_to(when):
            services.payment_expire_overdue(now=when)

    def _refund(self, payment, paid_at, amount: Decimal, *, manual: bool) -> None:
        when = paid_at + timedelta(
            days=self.rng.randint(1, 5), hours=self.rng.randint(0, 8)
        )
        if when >= self.now:
            return
        with clock.set_to(when):
            services.refund_request(
                payment_id=payment.pk,
                amount=amount,
                actor=self.finance,
                reason="customer request",
                manual=manual,
            )
        flagged = Payment.objects.get(pk=payment.pk)
        if flagged.needs_review and self.rng.random() < 0.5:
            with clock.set_to(when + timedelta(hours=2)):
                services.payment_resolve_review(
                    payment_id=payment.pk,
                    actor=self.support,
                    message="checked with the customer; nothing to do",
                )

    def _reconcile(self) -> None:
        """Run the reconciliation of the last minutes, as the schedule would."""
        for minutes in (6, 4, 2):
            when = self.now - timedelta(minutes=minutes)
            with clock.set_to(when):
                services.reconcile_cycle(trigger="schedule", now=when)


# What each provider does when the story says so ---------------------------------------


class _Provider:
    refunds = True

    def __init__(self, fake, payment: Payment):
        self.fake = fake
        self.payment = payment

    def _ingest(self, code: str, body: bytes, headers: dict[str, str]) -> None:
        services.webhook_ingest(
            gateway_code=code, body=body, headers=headers, remote_addr="127.0.0.1"
        )

    def time_out(self) -> None:
        """Let the provider end the checkout (nothing to do for most)."""

    def charge_back(self) -> None:
        raise NotImplementedError(type(self).__name__)

    def refuse_next_refund(self) -> None:
        raise NotImplementedError(type(self).__name__)

    def send_unconfirmed(self) -> None:
        raise NotImplementedError(type(self).__name__)


class _Sandbox(_Provider):
    def _choose(self, choice: str) -> None:
        token = self.payment.payment_url.rstrip("/").rsplit("/", 1)[1]
        services.sandbox_choose(token=token, choice=choice)

    def pay(self, *, late: bool = False, share: Decimal | None = None) -> None:
        self._choose("paid")

    def decline(self) -> None:
        self._choose("declined")

    def forge(self) -> None:
        self._ingest("sandbox", b'{"forged": true}', {"Sandbox-Signature": "t=1,v1=0"})


class _CoinPayments(_Provider):
    refunds = False

    @property
    def txn(self) -> str:
        return self.payment.gateway_transaction_id

    def pay(self, *, late: bool = False, share: Decimal | None = None) -> None:
        received = None
        if share is not None:
            coins = self.fake.cp_transaction(self.txn)["amount2"]
            received = (coins * share).quantize(Decimal("1e-8"))
        self.fake.cp_set_status(self.txn, 100, received=received)
        self._ingest("coinpayments", *self.fake.cp_ipn(self.txn))

    def decline(self) -> None:
        self.time_out()

    def time_out(self) -> None:
        if self.fake.cp_transaction(self.txn)["status"] == 0:
            self.fake.cp_time_out(self.txn)

    def forge(self) -> None:
        forged = self.fake.cp_ipn(self.txn, secret="not-the-secret")
        self._ingest("coinpayments", *forged)

    def send_unconfirmed(self) -> None:
        self.fake.cp_receive(self.txn, confirms=1)
        self._ingest("coinpayments", *self.fake.cp_ipn(self.txn))


class _Mpgs(_Provider):
    @property
    def order(self) -> str:
        return self.payment.ref_id

    def pay(self, *, late: bool = False, share: Decimal | None = None) -> None:
        amount = None if share is None else self.payment.amount * share
        self.fake.mpgs_pay(self.order, amount=amount, notify=False)
        self._ingest("mpgs", *self.fake.mpgs_notification(self.order))

    def decline(self) -> None:
        self.fake.mpgs_pay(self.order, approve=False, notify=False)
        self._ingest("mpgs", *self.fake.mpgs_notification(self.order))

    def charge_back(self) -> None:
        self.fake.mpgs_chargeback(self.order)
        self._ingest("mpgs", *self.fake.mpgs_notification(self.order))

    def refuse_next_refund(self) -> None:
        self.fake.mpgs_refund_answers.append("declined")

    def void(self) -> None:
        self.fake.mpgs_void(self.order)
        self._ingest("mpgs", *self.fake.mpgs_notification(self.order))

    def forge(self) -> None:
        forged = self.fake.mpgs_notification(self.order, secret="guessed")
        self._ingest("mpgs", *forged)


PROVIDERS = {"sandbox": _Sandbox, "coinpayments": _CoinPayments, "mpgs": _Mpgs}
