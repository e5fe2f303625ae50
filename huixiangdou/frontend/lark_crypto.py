"""Lark event-callback cryptography: AES-256-CBC payloads, request signatures, custom-bot signing.

Pure functions over bytes and strings, following the Lark Open Platform docs; no HTTP here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

from huixiangdou.primitive.json_input import InvalidJson, parse_json_object


class LarkCryptoError(ValueError):
    """An `encrypt` payload that cannot be decrypted with the configured Encrypt Key."""


_WRONG_KEY = ('cannot decrypt the event: check that encrypt_key in [frontend.lark_group] matches the '
              'Encrypt Key in the Lark developer console')


def _aes_key(encrypt_key: str) -> bytes:
    # Lark derives the AES-256 key as SHA-256 of the Encrypt Key shown in the developer console.
    return hashlib.sha256(encrypt_key.encode('utf-8')).digest()


def decrypt_text(encrypt_key: str, encrypted: str) -> str:
    """Decrypt base64(IV[16] + AES-256-CBC(PKCS7(utf-8 text))) as Lark builds it."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LarkCryptoError(f'encrypt field is not base64: {exc}') from None
    if len(raw) < 32 or len(raw) % 16:
        raise LarkCryptoError(f'encrypt field has {len(raw)} bytes; expected IV + whole AES blocks')
    cipher = AES.new(_aes_key(encrypt_key), AES.MODE_CBC, raw[:16])
    try:
        return unpad(cipher.decrypt(raw[16:]), AES.block_size).decode('utf-8')
    except (ValueError, UnicodeDecodeError):
        raise LarkCryptoError(_WRONG_KEY) from None


def decrypt_payload(encrypt_key: str, encrypted: str) -> dict:
    """Decrypt the `encrypt` field of a callback body into the event object.

    The plaintext gets the same bounds as any body (depth, lone surrogates): a sender that holds the
    key can still send hostile JSON.
    """
    try:
        return parse_json_object(decrypt_text(encrypt_key, encrypted))
    except InvalidJson as exc:
        raise LarkCryptoError(f'decrypted event: {exc}') from None


def encrypt_text(encrypt_key: str, text: str, iv: bytes | None = None) -> str:
    """The inverse of decrypt_text."""
    iv = iv or os.urandom(16)
    cipher = AES.new(_aes_key(encrypt_key), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(pad(text.encode('utf-8'), AES.block_size))).decode('ascii')


def encrypt_payload(encrypt_key: str, payload: dict, iv: bytes | None = None) -> str:
    """The inverse of decrypt_payload; what Lark does before posting (used by tests and the bench).

    ASCII-escaped JSON, so a payload holding a lone surrogate still encrypts (as "\\ud800").
    """
    return encrypt_text(encrypt_key, json.dumps(payload), iv)


def event_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: hex SHA-256 of timestamp + nonce + encrypt_key + raw body."""
    digest = hashlib.sha256()
    digest.update((timestamp + nonce + encrypt_key).encode('utf-8'))
    digest.update(body)
    return digest.hexdigest()


def verify_event_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes, signature: str) -> bool:
    expected = event_signature(timestamp, nonce, encrypt_key, body)
    return hmac.compare_digest(expected, signature or '')


def webhook_sign(timestamp: int | str, secret: str) -> str:
    """Custom-bot "sign": base64(HMAC-SHA256(key = f"{timestamp}\\n{secret}", message = b""))."""
    key = f'{timestamp}\n{secret}'.encode('utf-8')
    return base64.b64encode(hmac.new(key, b'', hashlib.sha256).digest()).decode('ascii')
