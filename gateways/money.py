"""Convert amounts between our Decimals and provider formats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 currencies whose minor unit is not 2 decimal places (list one, "Minor
# unit" column; fund codes such as CLF/UYI/UYW left out). This is the one table:
# plan validation and every adapter read it (the fake providers keep their own
# copy, checked against this one). Source:
# SIX, ISO 4217 list one (https://www.six-group.com/en/products-services/
# financial-information/data-standards.html).
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
# ISO 4217 currencies a plan can be priced in (the list of 2025-2026, without
# fund codes, precious metals and XTS/XXX). Source: SIX, "ISO 4217 currency
# codes", list one (https://www.six-group.com/en/products-services/
# financial-information/data-standards.html).
ISO_4217 = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XCG",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
    ]
)


# The largest amount the database keeps (16 digits, 3 of them decimals): a
# provider reporting more is answering garbage, not a payment.
MAX_AMOUNT = Decimal("9999999999999.999")


def exponent(currency: str) -> int:
    """Return the number of decimal places of a fiat currency."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def currency_problem(currency: str) -> str:
    """Say why a code is not an ISO 4217 currency a price can be set in, or ""."""
    if currency not in ISO_4217:
        return f"{currency!r} is not an ISO 4217 currency code (e.g. USD, EUR, JPY)"
    return ""


def precision_problem(amount: Decimal, currency: str) -> str:
    """Say why an amount has more decimals than its currency has, or ""."""
    places = exponent(currency)
    if amount == quantize(amount, currency):
        return ""
    if places == 0:
        return f"{currency} has no decimal places: use a whole amount"
    return f"{currency} has {places} decimal places at most"


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round an amount to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), ROUND_HALF_UP)


def to_provider(amount: Decimal, currency: str) -> str:
    """Format an amount as the decimal string providers expect ("10.00")."""
    return format(quantize(amount, currency), "f")


def to_minor(amount: Decimal, currency: str, *, places: int | None = None) -> int:
    """Return an amount in minor units (cents).

    `places` is for a provider that counts a currency's minor unit otherwise
    than ISO 4217 (Stripe: ISK in hundredths, MGA whole); an amount that is
    not a whole number of those units raises ValueError, never rounds.
    """
    value = quantize(amount, currency)
    if places is None:
        return int(value.scaleb(exponent(currency)))
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} {currency} is not a whole number of minor units")
    return int(scaled)


def from_minor(value: int, currency: str, *, places: int | None = None) -> Decimal:
    """Return a Decimal from minor units (`places` as for `to_minor`, kept exact)."""
    if places is None:
        return quantize(Decimal(int(value)).scaleb(-exponent(currency)), currency)
    exact = Decimal(int(value)).scaleb(-places)
    rounded = quantize(exact, currency)
    return rounded if rounded == exact else exact


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


def in_range(amount: Decimal) -> bool:
    """Tell whether an amount is finite and small enough to be stored."""
    return amount.is_finite() and abs(amount) <= MAX_AMOUNT


def same_money(a: Decimal, b: Decimal, currency: str) -> bool:
    """Compare two amounts at the currency's precision."""
    return quantize(a, currency) == quantize(b, currency)
