"""Find gateway adapters by code, built from Django settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Gateway, GatewayConfigError

# Every adapter the project knows. Settings choose which are offered
# (PAYMENT_GATEWAYS) and hold their credentials (GATEWAY_SETTINGS[code]).
ADAPTERS: dict[str, str] = {
    "sandbox": "gateways.sandbox.SandboxGateway",
    "coinpayments": "gateways.coinpayments.CoinPaymentsGateway",
    "mpgs": "gateways.mpgs.MPGSGateway",
    "stripe": "gateways.stripe_checkout.StripeGateway",
    "hyperpay": "gateways.hyperpay.HyperPayGateway",
}

_lock = threading.Lock()
_cache: dict[str, Gateway | GatewayConfigError] = {}


@dataclass(frozen=True)
class GatewayInfo:
    code: str
    display_name: str
    logo: str
    configured: bool
    problem: str
    options: tuple[str, ...]
    test_mode: bool = False


def offered_codes() -> list[str]:
    """Return the codes PAYMENT_GATEWAYS offers, in order, known ones only."""
    return [code for code in settings.PAYMENT_GATEWAYS if code in ADAPTERS]


def _build(code: str) -> Gateway | GatewayConfigError:
    cls = import_string(ADAPTERS[code])
    try:
        return cls(settings.GATEWAY_SETTINGS.get(code, {}))
    except GatewayConfigError as exc:
        return exc


def get_gateway(code: str) -> Gateway:
    """Return the adapter for `code`; raise GatewayConfigError if unusable."""
    if code not in ADAPTERS:
        raise GatewayConfigError(f"unknown gateway {code!r}")
    with _lock:
        built = _cache.get(code)
        if built is None:
            built = _cache[code] = _build(code)
    if isinstance(built, GatewayConfigError):
        raise built
    return built


def gateway_infos() -> list[GatewayInfo]:
    """Describe every offered gateway, configured or not, for the checkout."""
    infos = []
    for code in offered_codes():
        cls = import_string(ADAPTERS[code])
        try:
            gateway = get_gateway(code)
        except GatewayConfigError as exc:
            infos.append(
                GatewayInfo(
                    code, cls.display_name, cls.logo, False, str(exc), (), cls.test_mode
                )
            )
            continue
        infos.append(
            GatewayInfo(
                code,
                cls.display_name,
                cls.logo,
                True,
                "",
                tuple(gateway.checkout_options()),
                cls.test_mode,
            )
        )
    return infos


def reset() -> None:
    """Forget built adapters (settings changed, e.g. in tests)."""
    with _lock:
        _cache.clear()
