"""Convert amounts between our Decimals and provider formats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 currencies whose minor unit is not 2 decimal places.
ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def exponent(currency: str) -> int:
    """Return the number of decimal places of a fiat currency."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round an amount to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), ROUND_HALF_UP)


def to_provider(amount: Decimal, currency: str) -> str:
    """Format an amount as the decimal string providers expect ("10.00")."""
    return format(quantize(amount, currency), "f")


def to_minor(amount: Decimal, currency: str) -> int:
    """Return an amount in minor units (cents)."""
    return int(quantize(amount, currency).scaleb(exponent(currency)))


def from_minor(value: int, currency: str) -> Decimal:
    """Return a Decimal from minor units."""
    return quantize(Decimal(int(value)).scaleb(-exponent(currency)), currency)


def parse_amount(value: object) -> Decimal:
    """Parse a provider amount (string, int or float) into a finite Decimal.

    Floats go through their shortest repr so 10.1 stays 10.1. Raise ValueError
    on anything else, so callers can treat it as a garbage answer.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = (
            Decimal(repr(value))
            if isinstance(value, float)
            else Decimal(str(value).strip())
        )
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def same_money(a: Decimal, b: Decimal, currency: str) -> bool:
    """Compare two amounts at the currency's precision."""
    return quantize(a, currency) == quantize(b, currency)
