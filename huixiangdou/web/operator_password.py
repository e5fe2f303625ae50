"""Operator passwords as stored: a salted scrypt hash "scrypt$<salt hex>$<hash hex>", and the check of one.

Passwords are never stored nor logged in clear; it does not decide who may log in (auth.py does).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = 'scrypt'
MIN_CHARS = 8
MAX_CHARS = 1024  # scrypt reads the whole password: a megabyte "password" would be a cheap way to burn CPU
# scrypt's interactive-login cost (16 MiB of memory, tens of milliseconds).
_N, _R, _P = 2 ** 14, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_FORMAT = re.compile(rf'{PREFIX}\$([0-9a-f]{{{_SALT_BYTES * 2}}})\$([0-9a-f]{{{_HASH_BYTES * 2}}})')


class PasswordRefused(ValueError):
    """A password that cannot be set (too short, too long); the message says what is needed."""


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode('utf-8', 'surrogatepass'), salt=salt, n=_N, r=_R, p=_P,
                          dklen=_HASH_BYTES)


def hash_password(password: str) -> str:
    """The stored form of a new password; PasswordRefused when it is shorter than MIN_CHARS.

    Usage:
        stored = hash_password('correct horse')      # "scrypt$…$…"
        assert verify_password('correct horse', stored)
    """
    if len(password) < MIN_CHARS:
        raise PasswordRefused(f'an operator password needs at least {MIN_CHARS} characters')
    if len(password) > MAX_CHARS:
        raise PasswordRefused(f'an operator password may have at most {MAX_CHARS} characters')
    salt = secrets.token_bytes(_SALT_BYTES)
    return f'{PREFIX}${salt.hex()}${_scrypt(password, salt).hex()}'


def is_password_hash(stored: str) -> bool:
    return _FORMAT.fullmatch(stored) is not None


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from (compared in constant time)."""
    match = _FORMAT.fullmatch(stored)
    if match is None or len(password) > MAX_CHARS:
        return False
    return hmac.compare_digest(_scrypt(password, bytes.fromhex(match.group(1))), bytes.fromhex(match.group(2)))
