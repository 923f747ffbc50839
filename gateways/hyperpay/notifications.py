"""HyperPay (OPP) webhooks: AES-256-GCM encrypted notifications.

The body is the hex ciphertext, or (HyperPay's own plugins, PHP 7.1+) a JSON
object `{"encryptedBody": "<hex>"}`; the IV and the authentication tag come
in the `X-Initialization-Vector` and `X-Authentication-Tag` headers (hex); the
key is the 64-hex-character secret of the webhook configuration. A body that
decrypts is authenticated: GCM refuses any other key, IV, tag or byte.
Sources: https://docs.oppwa.com/tutorials/webhooks/integration-guide ,
https://hyperpay.docs.oppwa.com/tutorials/webhooks/decryption-example ,
HyperpayOpenSource/Magento-2-Plugin: Hyperpay/Extension/Model/Hook.php.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..base import WebhookRejected, header

IV_HEADER = "X-Initialization-Vector"
TAG_HEADER = "X-Authentication-Tag"
KEY_HEX = re.compile(r"[0-9A-Fa-f]{64}")
TAG_BYTES = 16  # GCM's full 128-bit tag, as the platform sends it
# AESGCM takes nonces of 8 to 128 bytes; the platform sends 12.
IV_BYTES = range(8, 129)


def webhook_key(value: str) -> bytes | None:
    """Return the AES-256 key of HYPERPAY_WEBHOOK_KEY; None when unset.

    Raise ValueError when it is not 64 hexadecimal characters.
    """
    value = value.strip()
    if not value:
        return None
    if not KEY_HEX.fullmatch(value):
        raise ValueError("HYPERPAY_WEBHOOK_KEY must be 64 hexadecimal characters")
    return bytes.fromhex(value)


def decrypt(body: bytes, headers: Mapping[str, str], key: bytes) -> dict[str, Any]:
    """Decrypt and authenticate a notification; WebhookRejected if it fails."""
    iv = _hex(header(headers, IV_HEADER), IV_HEADER)
    tag = _hex(header(headers, TAG_HEADER), TAG_HEADER)
    if len(iv) not in IV_BYTES or len(tag) != TAG_BYTES:
        raise WebhookRejected("HyperPay notification: IV or tag of the wrong length")
    ciphertext = _hex(_ciphertext(body), "body")
    try:
        plain = AESGCM(key).decrypt(iv, ciphertext + tag, None)
    except InvalidTag as exc:
        raise WebhookRejected(
            "HyperPay notification does not authenticate (wrong key, or altered)"
        ) from exc
    try:
        envelope = json.loads(plain)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WebhookRejected(
            "HyperPay notification: decrypted body is not JSON"
        ) from exc
    if not isinstance(envelope, dict):
        raise WebhookRejected("HyperPay notification: decrypted body is not an object")
    return envelope


def _ciphertext(body: bytes) -> str:
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise WebhookRejected("HyperPay notification: body is not hex") from exc
    if not text.startswith("{"):
        return text
    try:
        wrapper = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WebhookRejected("HyperPay notification: malformed JSON body") from exc
    encrypted = wrapper.get("encryptedBody") if isinstance(wrapper, dict) else None
    if not isinstance(encrypted, str):
        raise WebhookRejected("HyperPay notification: JSON body without encryptedBody")
    return encrypted.strip()


def _hex(value: str, name: str) -> bytes:
    if not value:
        raise WebhookRejected(f"HyperPay notification: missing {name}")
    try:
        return bytes.fromhex(value.strip())
    except ValueError as exc:
        raise WebhookRejected(f"HyperPay notification: {name} is not hex") from exc
