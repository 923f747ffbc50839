"""CoinPayments legacy API (v1): crypto checkout, status polling and IPNs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

from . import money
from .base import (
    CheckoutRequest,
    CheckoutSession,
    Gateway,
    GatewayConfigError,
    GatewayUnavailable,
    NotSupported,
    PaymentRef,
    RefundRequest,
    RefundResult,
    Status,
    StatusResult,
    WebhookEvent,
    WebhookRejected,
    WebhookReply,
    constant_time_equal,
    header,
    rotating_secrets,
    verify_with_secrets,
)
from .http import GatewayHTTP, json_body

logger = logging.getLogger(__name__)

NAME = "coinpayments"
DEFAULT_API_URL = "https://www.coinpayments.net/api.php"
SIGNATURE_HEADER = "HMAC"
REQUIRED_SETTINGS = {
    "public_key": "COINPAYMENTS_PUBLIC_KEY",
    "private_key": "COINPAYMENTS_PRIVATE_KEY",
    "merchant_id": "COINPAYMENTS_MERCHANT_ID",
    "ipn_secret": "COINPAYMENTS_IPN_SECRET",
}
NO_REFUNDS = "CoinPayments has no refund API; record a manual refund"
REVERSAL_REVIEW = (
    "CoinPayments reports a PayPal refund or reversal (status -2): "
    "the money left without anyone here asking"
)
_INTEGER = re.compile(r"-?\d+")
_LONG_HEX = re.compile(r"[0-9a-fA-F]{64,}")
# Answers that will not change however often the call is repeated: the key
# cannot see the transaction, or may not use the command. Any other refusal
# (e.g. "Too many errors in the last two minutes …", an unknown text) counts
# as an outage and is retried with back-off. The texts are matched loosely:
# the API documents no list of error messages (https://www.coinpayments.net/apidoc:
# "otherwise it will contain an error message"); these are the ones seen in
# answers: "Invalid payment ID" for an unknown txid, and "This API Key does
# not have permission to use that command!" for a command not enabled on the
# key (59adc5ed-4a64-4984-bf6a-2b9117da6625/pyCoinPayments issue #5).
_NO_SUCH_PAYMENT = re.compile(r"invalid (payment|transaction) id", re.IGNORECASE)
_NO_PERMISSION = re.compile(r"does not have permission", re.IGNORECASE)


class _Refused(GatewayUnavailable):
    """A permanent refusal: asking again will get the same answer."""

    def __init__(self, message: str, words: str):
        super().__init__(message)
        self.words = words


def sign(secret: str, body: bytes) -> str:
    """Return the hex HMAC-SHA512 of exact body bytes (API calls and IPNs)."""
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


class CoinPaymentsGateway(Gateway):
    """Crypto payments on CoinPayments' hosted checkout page.

    Status lookups compare coins, so `PaymentRef.data` should carry the
    `crypto_amount` and `crypto_currency` (strings) returned at checkout; the
    provider's own `amountf`/`coin` stand in when they are missing.
    """

    # Provider quirks:
    # - Every call is a form POST to one URL, signed in an `HMAC` header with
    #   HMAC-SHA512(private key, the exact body bytes): the body is encoded once
    #   and those bytes are both signed and sent.
    # - `nonce` is optional; when sent it must be above the key's last one in
    #   the order calls arrive. Workers on several hosts share the key and call
    #   at once, so no nonce is sent (see `_request`): nothing is refused for
    #   order, and replay protection rests on the HMAC over the body and TLS.
    # - Success is `error == "ok"` (case-sensitive); any other text is a reason.
    # - get_tx_info reports coin amounts (`amountf` asked, `receivedf` paid),
    #   never the fiat price; IPNs carry the fiat price in `amount1`/`currency1`.
    # - Status -1 means "cancelled / timed out" alike; -2 is a PayPal reversal.
    # - Status 0 with `receivedf` > 0 (IPN: `received_amount`) means coins were
    #   sent and wait for confirmations: such a payment is "settling" and must
    #   not expire; only >= 100 or 2 completes it and < 0 ends it. The API
    #   pages say "You should never ship/release your product until the
    #   status is >= 100 OR == 2" (https://www.coinpayments.net/merchant-tools-ipn,
    #   Payment Statuses).
    # - -1 after coins arrived (underpaid, or confirmed too late) ends the
    #   payment and flags it: the provider keeps the coins and e-mails the
    #   buyer ("This will let us send them a notice if they underpay",
    #   https://www.coinpayments.net/apidoc-create-transaction, buyer_email).
    # - A refusal such as "Invalid payment ID" or a missing permission is not
    #   an outage: once the payment's own deadline has passed it ends the
    #   payment FAILED (flagged when the key could not look at all).
    # - Only `ipn_type=api` IPNs are about checkouts made here; `simple`,
    #   `button`, `cart`, `donation`, `deposit` and `withdrawal` IPNs are
    #   verified, answered and ignored (merchant-tools-ipn, ipn_type).
    # - A repeated form field: PHP's $_POST, which the provider's own IPN
    #   sample reads, keeps the last value; so does `_form`.
    # - There is no refund API: the merchant sends coins back by hand.
    # - A PHP backend: an empty object may come back as `[]`.

    code = "coinpayments"
    display_name = "Crypto (CoinPayments)"
    logo = "payments/logos/coinpayments.svg"
    supports_refunds = False
    batch_size = 25
    secret_headers = (SIGNATURE_HEADER,)
    choices_field = "crypto_currency"

    def __init__(self, settings: Mapping[str, Any]):
        super().__init__(settings)
        values = {
            key: str(self.settings.get(key) or "").strip() for key in REQUIRED_SETTINGS
        }
        missing = [env for key, env in REQUIRED_SETTINGS.items() if not values[key]]
        if missing:
            raise GatewayConfigError(f"CoinPayments needs {', '.join(missing)}")
        self.public_key = values["public_key"]
        self.private_key = values["private_key"]
        self.merchant_id = values["merchant_id"]
        self.ipn_secret = values["ipn_secret"]
        self.ipn_secret_previous = str(
            self.settings.get("ipn_secret_previous") or ""
        ).strip()
        self.ipn_url = str(self.settings.get("ipn_url") or "").strip()
        self.api_url = (
            str(self.settings.get("api_url") or "").strip() or DEFAULT_API_URL
        )
        self.currency2 = str(self.settings.get("currency2") or "BTC").strip().upper()
        self.coins = _coin_list(self.settings.get("coins")) or [self.currency2]
        if self.currency2 not in self.coins:
            raise GatewayConfigError(
                f"COINPAYMENTS_CURRENCY2 ({self.currency2}) is not one of "
                "COINPAYMENTS_COINS"
            )
        try:
            self.http = GatewayHTTP(
                NAME,
                connect_timeout=float(self.settings.get("connect_timeout") or 5),
                read_timeout=float(self.settings.get("read_timeout") or 20),
                pool_size=int(self.settings.get("pool_size") or 16),
            )
        except (TypeError, ValueError) as exc:
            raise GatewayConfigError(
                "CoinPayments timeouts and pool size must be numbers"
            ) from exc

    # public API -------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Create a transaction and return its hosted checkout page."""
        coin = (request.crypto_currency or self.currency2).strip().upper()
        if coin not in self.coins:
            raise ValueError(
                f"{coin} is not offered; choose one of {', '.join(self.coins)}"
            )
        # https://www.coinpayments.net/apidoc-create-transaction
        result = self._request(
            "create_transaction",
            {
                "amount": money.to_provider(request.amount, request.currency),
                "currency1": request.currency,
                "currency2": coin,
                "buyer_email": request.email,
                "invoice": request.ref_id,
                "item_name": request.description,
                "ipn_url": self.ipn_url or request.notify_url,
                "success_url": request.return_url,
                "cancel_url": request.cancel_url,
            },
            idempotent=False,
        )
        now = datetime.now(UTC)
        try:
            txn_id = str(result["txn_id"])
            payment_url = str(result["checkout_url"])
            crypto_amount = money.parse_amount(result["amount"])
            timeout = result.get("timeout")
            expires_at = (
                None if timeout is None else now + timedelta(seconds=int(timeout))
            )
            if not txn_id or not payment_url:
                raise ValueError("empty txn_id or checkout_url")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Name the missing field, never echo provider values.
            detail = f"no {exc.args[0]}" if isinstance(exc, KeyError) else "bad field"
            raise GatewayUnavailable(
                f"{NAME}: create_transaction answer is incomplete ({detail}); "
                "a transaction may exist at the provider"
            ) from exc
        data = {
            "status_url": str(result.get("status_url") or ""),
            "qrcode_url": str(result.get("qrcode_url") or ""),
            "confirms_needed": str(result.get("confirms_needed") or ""),
            "crypto_amount": format(crypto_amount, "f"),
            "crypto_currency": coin,
        }
        if result.get("dest_tag"):
            data["dest_tag"] = str(result["dest_tag"])
        return CheckoutSession(
            payment_url=payment_url,
            transaction_id=txn_id,
            expires_at=expires_at,
            crypto_address=str(result.get("address") or ""),
            crypto_amount=crypto_amount,
            crypto_currency=coin,
            data=data,
            raw=dict(result),
        )

    def fetch_status(self, ref: PaymentRef) -> StatusResult:
        """Ask get_tx_info for one payment and map it to a canonical status."""
        if not ref.transaction_id:
            return StatusResult(
                ref.ref_id,
                Status.PENDING,
                currency=ref.currency,
                message="no CoinPayments txn_id yet",
            )
        # https://www.coinpayments.net/apidoc-get-tx-info
        try:
            entry = self._request(
                "get_tx_info", {"txid": ref.transaction_id}, idempotent=True
            )
        except _Refused as exc:
            ended = self._refused(ref, exc.words, datetime.now(UTC))
            if ended is None:
                raise
            return ended
        if not isinstance(entry, Mapping):
            raise GatewayUnavailable(f"{NAME}: get_tx_info answer is not an object")
        return self._parse(entry, ref, datetime.now(UTC))

    def fetch_status_many(self, refs: Iterable[PaymentRef]) -> dict[str, StatusResult]:
        """Ask get_tx_info_multi, 25 ids a call; entries with an error are left out.

        A failed call leaves its refs out too, unless every call failed: then
        the first fault is raised. A permanent refusal (of the call or of one
        entry) ends the refs past their deadline instead (see `_refused`).
        """
        by_txid: dict[str, list[PaymentRef]] = {}
        for ref in refs:
            if ref.transaction_id:
                by_txid.setdefault(ref.transaction_id, []).append(ref)
        txids = list(by_txid)
        results: dict[str, StatusResult] = {}
        faults: list[GatewayUnavailable] = []
        for start in range(0, len(txids), self.batch_size):
            chunk = txids[start : start + self.batch_size]
            now = datetime.now(UTC)
            try:
                # https://www.coinpayments.net/apidoc-get-tx-info-multi
                answer = self._request(
                    "get_tx_info_multi", {"txid": "|".join(chunk)}, idempotent=True
                )
                if answer == []:
                    answer = {}
                if not isinstance(answer, Mapping):
                    raise GatewayUnavailable(
                        f"{NAME}: get_tx_info_multi answer is not an object"
                    )
            except _Refused as exc:
                ended = self._refused_many(chunk, by_txid, exc.words, now)
                results.update(ended)
                if not ended:
                    faults.append(exc)
                continue
            except GatewayUnavailable as exc:
                faults.append(exc)
                continue
            for txid in chunk:
                entry = answer.get(txid)
                if not isinstance(entry, Mapping):
                    continue
                if entry.get("error") != "ok":
                    words = self._redact(entry.get("error"))
                    if _permanent(words):
                        results.update(self._refused_many([txid], by_txid, words, now))
                    continue
                for ref in by_txid[txid]:
                    try:
                        results[ref.ref_id] = self._parse(entry, ref, now)
                    except GatewayUnavailable as exc:
                        logger.warning("%s: skipped %s: %s", NAME, ref.ref_id, exc)
        calls = -(-len(txids) // self.batch_size)
        if faults and len(faults) == calls:
            raise faults[0]
        if faults:
            logger.warning(
                "%s: %d of %d get_tx_info_multi calls failed", NAME, len(faults), calls
            )
        return results

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refuse: refunds are sent by hand from the CoinPayments wallet."""
        raise NotSupported(NO_REFUNDS)

    def fetch_refund(self, request: RefundRequest) -> RefundResult | None:
        """Refuse: there is no refund to look up."""
        raise NotSupported(NO_REFUNDS)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], *, verified: bool = False
    ) -> WebhookEvent:
        """Verify an IPN's HMAC (unless already verified), mode and merchant; read it.

        `ipn_mode` and `merchant` are checked even when `verified`, so a stored
        notification for another account is never applied.
        """
        used = ""
        if not verified:
            given = header(headers, SIGNATURE_HEADER)
            if not given:
                raise WebhookRejected("missing HMAC header")

            def check(secret: str) -> None:
                if not constant_time_equal(sign(secret, body), given.lower()):
                    raise WebhookRejected(
                        "HMAC signature does not match the IPN secret"
                    )

            used, _ = verify_with_secrets(
                rotating_secrets(self.ipn_secret, self.ipn_secret_previous), check
            )
        return replace(self._read_ipn(body), secret_used=used)

    def _read_ipn(self, body: bytes) -> WebhookEvent:
        """Read a verified IPN: mode, merchant, type, status and amounts."""
        fields = _form(body)
        if fields.get("ipn_mode") != "hmac":
            raise WebhookRejected("ipn_mode is not hmac")
        if fields.get("merchant") != self.merchant_id:
            raise WebhookRejected("merchant does not match COINPAYMENTS_MERCHANT_ID")
        event_id = fields.get("ipn_id", "")
        if not event_id:
            raise WebhookRejected("malformed IPN: no ipn_id")
        ipn_type = fields.get("ipn_type", "")
        if ipn_type != "api":
            # Deposits, withdrawals, buttons…: legitimate, but never about a
            # checkout made here, so they name no payment (their txn_id is a
            # coin transaction or another checkout's) and carry no status.
            # https://www.coinpayments.net/merchant-tools-ipn (ipn_type)
            return WebhookEvent(
                event_id=event_id,
                status=None,
                message=f"ignored ipn_type {ipn_type or '(none)'}",
                raw=fields,
            )
        txn_id = fields.get("txn_id", "")
        if not txn_id:
            raise WebhookRejected("malformed IPN: no txn_id")
        code = fields.get("status", "").strip()
        if not _INTEGER.fullmatch(code):
            raise WebhookRejected("malformed IPN: status is not an integer")
        try:
            amount = money.parse_amount(fields.get("amount1"))
        except ValueError as exc:
            raise WebhookRejected("malformed IPN: amount1 is not an amount") from exc
        currency = fields.get("currency1", "").strip()
        if amount < 0 or not currency:
            raise WebhookRejected("malformed IPN: bad amount1 or no currency1")
        message = fields.get("status_text", "")
        status = self._status_from(int(code), None, datetime.now(UTC), message)
        shortfall = _ipn_shortfall(fields) if status == Status.COMPLETED else ""
        if status in (Status.FAILED, Status.EXPIRED):
            # Coins that arrived before the end must be seen by a person; the
            # lookup reports them with the payment's own coin amounts.
            shortfall = _ipn_received(fields)
        review = ""
        if status == Status.REFUNDED:
            # What was reversed is priced by the lookup, from the coins.
            shortfall, review = "reversed", REVERSAL_REVIEW
        received = _ipn_received(fields) if status == Status.PENDING else ""
        if received:
            # Coins sent, waiting for confirmations: settling, as a lookup says.
            message = f"coins received, waiting for confirmations: {received}" + (
                f" ({message})" if message else ""
            )
        return WebhookEvent(
            event_id=event_id,
            ref_id=fields.get("invoice", ""),
            transaction_id=txn_id,
            status=status,
            amount=amount,
            currency=currency,
            # amount1 is the price, not what arrived: a short payment reported
            # complete, or an ended one that received coins, is confirmed
            # through get_tx_info, which compares coins.
            confirm=bool(shortfall),
            message=f"{message}; {shortfall}" if shortfall else message,
            raw=fields,
            settling=bool(received),
            review=review,
        )

    def webhook_reply(self, event: WebhookEvent | None) -> WebhookReply:
        """Answer the plain text CoinPayments' own IPN sample sends."""
        return WebhookReply(200, "IPN OK", "text/plain")

    def checkout_options(self) -> list[str]:
        """Return the coins offered at checkout."""
        return list(self.coins)

    # private ------------------------------------------------------------------------

    def _request(self, cmd: str, fields: Mapping[str, str], *, idempotent: bool) -> Any:
        """Send one signed command and return its `result`; faults raise."""
        # https://www.coinpayments.net/apidoc (API POST Fields): `nonce` is
        # "Optional nonce (an integer that is always higher than in your previous
        # API call) to prevent replay attacks" (wording as in the verbatim copy
        # https://cryptowallet.pw/docs). CoinPayments' own PHP client sends none
        # (CoinPaymentsNet/coinpayments-php: src/CoinpaymentsCurlRequest.php).
        # Sent from concurrent workers, nonces reach the provider out of order
        # and are refused; keeping them in order would mean one call in flight
        # per key across every host. So none is sent, and nothing is re-sent.
        body = urlencode(
            {
                "version": "1",
                "key": self.public_key,
                "cmd": cmd,
                "format": "json",
                **fields,
            }
        ).encode("ascii")
        response = self.http.request(
            "POST",
            self.api_url,
            op=cmd,
            idempotent=idempotent,
            data=body,
            headers={
                SIGNATURE_HEADER: sign(self.private_key, body),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        payload = json_body(response, NAME)
        if not isinstance(payload, Mapping) or "error" not in payload:
            raise GatewayUnavailable(f"{NAME}: {cmd} answer has no error field")
        error = payload["error"]
        if error != "ok":
            words = self._redact(error)
            if _permanent(words):
                raise _Refused(f"{NAME}: {cmd} refused: {words}", words)
            raise GatewayUnavailable(f"{NAME}: {cmd} refused: {words}")
        return payload.get("result")

    def _parse(
        self, entry: Mapping[str, Any], ref: PaymentRef, now: datetime
    ) -> StatusResult:
        """Map one get_tx_info entry; price a completed payment in fiat."""
        status_text = str(entry.get("status_text") or "")
        expires = entry.get("time_expires")
        if expires is None and ref.expires_at is not None:
            expires = ref.expires_at.timestamp()
        status = self._status_from(entry.get("status"), expires, now, status_text)
        amount, note, settling, review = None, "", False, ""
        if status == Status.COMPLETED:
            amount, note = self._paid_in_fiat(entry, ref)
            review = f"CoinPayments: {note}" if note else ""
        elif status == Status.REFUNDED:
            # A PayPal refund or reversal: the coins' worth is what was paid,
            # and all of it went back without anyone here asking.
            amount, note = self._paid_in_fiat(entry, ref)
            review = REVERSAL_REVIEW
        elif status in (Status.PENDING, Status.FAILED, Status.EXPIRED):
            coins = self._received(entry, ref)
            if coins and status == Status.PENDING:
                settling = True
                confirms = entry.get("recv_confirms")
                note = f"coins received, waiting for confirmations: {coins}" + (
                    f", {confirms} confirmations" if confirms is not None else ""
                )
            elif coins:
                note = f"ended after coins arrived: {coins}"
                review = (
                    f"CoinPayments ended the payment ({status_text or status}) "
                    f"after coins arrived: {coins}; refund or top up by hand"
                )
        return StatusResult(
            ref_id=ref.ref_id,
            status=status,
            amount=amount,
            currency=ref.currency,
            transaction_id=ref.transaction_id,
            message=f"{note} ({status_text})" if note else status_text,
            raw=dict(entry),
            settling=settling,
            review=review,
        )

    def _received(self, entry: Mapping[str, Any], ref: PaymentRef) -> str:
        """Describe the coins received for a payment not completed, or ""."""
        coin = str(entry.get("coin") or ref.data.get("crypto_currency") or "")
        try:
            received = money.parse_amount(entry.get("receivedf") or "0")
            asked = money.parse_amount(
                ref.data.get("crypto_amount") or entry.get("amountf") or "0"
            )
        except ValueError as exc:
            # Ending or keeping a payment on an unreadable amount would guess.
            raise GatewayUnavailable(
                f"{NAME}: payment {ref.ref_id} has unreadable coin amounts"
            ) from exc
        if received <= 0:
            return ""
        return f"received {_coins(received)} of {_coins(asked)} {coin}"

    def _refused(self, ref: PaymentRef, words: str, now: datetime):
        """End a payment the provider will never report on, once past its deadline.

        Return None before the deadline (or without one): the refusal is then
        treated like an outage and retried with back-off.
        """
        if ref.expires_at is None or now < ref.expires_at:
            return None
        review = ""
        if _NO_PERMISSION.search(words):
            # The key could not look: coins may have arrived all the same.
            review = (
                f"could not be checked after its deadline: CoinPayments answered "
                f"{words!r}; enable get_tx_info for the API key, then refresh"
            )
        return StatusResult(
            ref_id=ref.ref_id,
            status=Status.FAILED,
            currency=ref.currency,
            transaction_id=ref.transaction_id,
            message=f"CoinPayments answered: {words}",
            raw={"error": words},
            review=review,
        )

    def _refused_many(
        self,
        txids: Iterable[str],
        by_txid: Mapping[str, list[PaymentRef]],
        words: str,
        now: datetime,
    ) -> dict[str, StatusResult]:
        ended = {}
        for txid in txids:
            for ref in by_txid[txid]:
                result = self._refused(ref, words, now)
                if result is not None:
                    ended[ref.ref_id] = result
        return ended

    @staticmethod
    def _status_from(
        code: Any, time_expires: Any, now: datetime, status_text: str = ""
    ) -> str:
        """Map a CoinPayments status code; only explicit success or failure is final."""
        if isinstance(code, bool) or not _INTEGER.fullmatch(str(code).strip()):
            return Status.PENDING
        value = int(str(code).strip())
        if value >= 100 or value == 2:
            return Status.COMPLETED
        if value >= 0:
            return Status.PENDING
        if value == -1:
            # The documented text is "Cancelled / Timed Out" either way, so the
            # expiry time decides when known; only the text is left for IPNs.
            try:
                expired = now.timestamp() >= float(time_expires)
            except (TypeError, ValueError):
                expired = "timed out" in status_text.lower()
            return Status.EXPIRED if expired else Status.FAILED
        if value == -2:
            return Status.REFUNDED
        return Status.FAILED

    def _paid_in_fiat(
        self, entry: Mapping[str, Any], ref: PaymentRef
    ) -> tuple[Decimal | None, str]:
        """Return the fiat worth of the coins received, and a note when short."""
        coin = str(entry.get("coin") or "").upper()
        wanted_coin = str(ref.data.get("crypto_currency") or coin).upper()
        try:
            received = money.parse_amount(entry.get("receivedf"))
            asked = money.parse_amount(
                ref.data.get("crypto_amount") or entry.get("amountf")
            )
            if asked <= 0:
                raise ValueError("asked for nothing")
        except ValueError as exc:
            raise GatewayUnavailable(
                f"{NAME}: completed payment {ref.ref_id} has unreadable coin amounts"
            ) from exc
        if ref.amount is None:
            return None, "no price stored to compare with"
        cents = Decimal(1).scaleb(-money.exponent(ref.currency))
        if coin != wanted_coin:
            return Decimal(0).quantize(cents), (
                f"wrong coin: received {format(received, 'f')} {coin or '?'}, "
                f"expected {format(asked, 'f')} {wanted_coin}"
            )
        if received == asked:
            return ref.amount, ""
        # The coins received at the invoice's own rate (price / coins asked),
        # rounded down: a short payment never rounds up to the full price.
        share = (ref.amount * received / asked).quantize(cents, ROUND_DOWN)
        received_text, asked_text = format(received, "f"), format(asked, "f")
        word = "underpaid" if received < asked else "overpaid"
        return share, f"{word}: received {received_text} of {asked_text} {coin}"

    def _redact(self, text: object) -> str:
        """Return provider text safe for messages: no keys, no long hex runs."""
        clean = str(text)
        secrets = (self.private_key, self.ipn_secret, self.public_key)
        for secret in filter(None, (*secrets, self.ipn_secret_previous)):
            clean = clean.replace(secret, "[redacted]")
        return _LONG_HEX.sub("[redacted]", clean)[:200]


def _coin_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    coins = [str(item).strip().upper() for item in items]
    return list(dict.fromkeys(coin for coin in coins if coin))


def _coins(amount: Decimal) -> str:
    """Format a coin amount as the provider does (8 places) unless finer."""
    places = Decimal("0.00000001")
    if amount == amount.quantize(places):
        return format(amount.quantize(places), "f")
    return format(amount, "f")


def _permanent(words: str) -> bool:
    return bool(_NO_SUCH_PAYMENT.search(words) or _NO_PERMISSION.search(words))


def _form(body: bytes) -> dict[str, str]:
    # The sender is PHP, whose $_POST keeps the last of repeated fields (as
    # the provider's own IPN sample reads them); the fake server does the same.
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _ipn_shortfall(fields: Mapping[str, str]) -> str:
    try:
        received = money.parse_amount(fields.get("received_amount"))
        asked = money.parse_amount(fields.get("amount2"))
    except ValueError:
        return ""
    if received == asked:
        return ""
    coin = fields.get("currency2", "")
    word = "underpaid" if received < asked else "overpaid"
    return f"{word}: received {format(received, 'f')} of {format(asked, 'f')} {coin}"


def _ipn_received(fields: Mapping[str, str]) -> str:
    try:
        received = money.parse_amount(fields.get("received_amount") or "0")
    except ValueError:
        return ""
    if received <= 0:
        return ""
    asked, coin = fields.get("amount2", "?"), fields.get("currency2", "")
    return f"received {format(received, 'f')} of {asked} {coin}"
