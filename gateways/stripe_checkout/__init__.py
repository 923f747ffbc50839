"""Stripe Checkout (hosted payment page) through the official `stripe` package.

`adapter` holds the gateway, `transport` the library's HTTP client over
GatewayHTTP, `objects` the reading of Stripe's objects and amounts.
"""

from .adapter import StripeGateway
from .transport import StripeTransport

__all__ = ["StripeGateway", "StripeTransport"]
