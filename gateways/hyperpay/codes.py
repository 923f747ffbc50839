"""HyperPay (OPP) result codes: what each documented group says about a payment.

Every answer carries `result.code` (`ddd.ddd.ddd`). The platform documents the
groups as regular expressions; success and pending are evaluated first, then
the groups that are not plain rejections, and everything else is a decline or
an error whose code and description are kept. Sources:
https://docs.latam.ppro.com/reference/result-codes (the full list of groups),
https://developers.primeiropay.com/result-codes (their descriptions);
HyperPay's own plugins use the same expressions
(HyperpayOpenSource/laravel-package: src/Controllers/MainController.php).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Outcome(StrEnum):
    """What a result code says happened to a transaction."""

    SUCCESS = "success"
    # Processed successfully, but "should be manually reviewed".
    REVIEW = "review"
    # An open session: "within half an hour there will be a status change, if
    # nothing else happens, to timeout".
    PENDING = "pending"
    # Waiting for a non-instant payment: may change "even after several days".
    WAITING = "waiting"
    # Communication error ("timeout, uncertain result"): the outcome is unknown.
    UNCERTAIN = "uncertain"
    # The payer's bank took the money back.
    CHARGEBACK = "chargeback"
    # A pending transaction that timed out at the platform.
    TIMED_OUT = "timed_out"
    DECLINED = "declined"


# In order: the first group that matches decides.
_GROUPS = (
    (Outcome.SUCCESS, re.compile(r"^(000\.000\.|000\.100\.1|000\.[36]|000\.400\.[1][12]0)")),
    (Outcome.REVIEW, re.compile(r"^(000\.400\.0[^3]|000\.400\.100)")),
    (Outcome.PENDING, re.compile(r"^(000\.200)")),
    (Outcome.WAITING, re.compile(r"^(800\.400\.5|100\.400\.500)")),
    (Outcome.UNCERTAIN, re.compile(r"^(900\.[1234]00|000\.400\.030)")),
    (Outcome.CHARGEBACK, re.compile(r"^(000\.100\.2)")),
)  # fmt: skip
# "Previously pending (online transfer) transaction timed out": part of the
# asynchronous-workflow rejections, but the payer did nothing wrong.
_TIMED_OUT = frozenset({"100.396.103", "100.395.501"})
_CODE = re.compile(r"\d{3}\.\d{3}\.\d{3}")
# Answers about a request rather than a transaction.
CHECKOUT_CREATED = "000.200.100"
NOT_FOUND = "700.400.580"  # "cannot find transaction" (transaction reports)
INVALID_PARAMETER = "200.300.404"  # also: no payment session for that checkout id
DUPLICATE = "800.110.100"  # "duplicate transaction"
# Test mode answers success with this code: it matches the success group.
TEST_MODE_SUCCESS = "000.100.110"


def classify(code: str) -> Outcome:
    """Return what a result code says; ValueError when it is not a result code."""
    code = str(code or "").strip()
    if not _CODE.fullmatch(code):
        raise ValueError(f"not a result code: {code!r}")
    for outcome, pattern in _GROUPS:
        if pattern.match(code):
            return outcome
    if code in _TIMED_OUT:
        return Outcome.TIMED_OUT
    return Outcome.DECLINED
