"""HyperPay settings: brands and entity ids."""

from __future__ import annotations

import re

DEFAULT_BRANDS = ("VISA", "MASTER")
MADA = "MADA"
_BRAND = re.compile(r"[A-Z][A-Z0-9_]*")
# OPP entity ids: 32 hexadecimal characters (e.g. 8a8294174b7ecb28014b9699220015ca).
_ENTITY = re.compile(r"[0-9A-Za-z]{8,64}")


def parse_brands(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return the brands of HYPERPAY_BRANDS ("VISA MASTER"); ValueError if bad."""
    words = value.split() if isinstance(value, str) else list(value)
    brands = tuple(dict.fromkeys(word.strip().upper() for word in words if word))
    bad = [brand for brand in brands if not _BRAND.fullmatch(brand)]
    if bad:
        raise ValueError(
            f"HYPERPAY_BRANDS has {', '.join(bad)}: use brand codes separated "
            "by spaces, e.g. VISA MASTER AMEX"
        )
    return brands or DEFAULT_BRANDS


def entity_problem(name: str, value: str) -> str:
    """Say why an entity id cannot be one, or ""."""
    if not _ENTITY.fullmatch(value):
        return f"{name} must be the entity id from HyperPay (letters and digits)"
    return ""
