"""The fake provider server: every provider's fake composed on one core.

Adding a provider: write its module (see README.md in this package) and add
its class to the bases of `FakeProviderServer`.
"""

from .coinpayments import CoinPaymentsFake, cp_signature
from .core import FAULT_KINDS
from .hyperpay import HyperPayFake
from .mpgs import MpgsFake
from .stripe import StripeFake, stripe_signature

__all__ = ["FAULT_KINDS", "FakeProviderServer", "cp_signature", "stripe_signature"]


class FakeProviderServer(CoinPaymentsFake, MpgsFake, HyperPayFake, StripeFake):
    """Serve fake CoinPayments, MPGS, HyperPay and Stripe APIs on 127.0.0.1 from a thread.

    The fake keeps provider-side state, checks credentials the way the real
    services do, serves minimal hosted pages, posts IPNs/notifications to our
    webhook URLs and injects transport faults on demand. Integration tests and
    benchmarks drive it over real sockets so that our HTTP client, timeouts and
    pooling are exercised.
    """
