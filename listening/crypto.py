"""Encryption at rest for every secret the product stores: connector credentials (OAuth tokens
among them), the alert webhook's signing secret, and secrets shown once, which wait in the session
encrypted (never in plain text) until their page is opened.

Keys come from settings.CREDENTIALS_KEYS (newest first). MultiFernet encrypts with the first and
decrypts with any, so rotating is: prepend a new key, run `manage.py rotate_credentials`, drop the
old key. In DEBUG without keys, a key is derived from SECRET_KEY so a trial needs no setup.

A model column holding ciphertext is declared once with `encrypted_column` (the model's app calls
it when its models load), so rotation finds every one without this lower layer importing the
apps above it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialsUnreadable(Exception):
    """Stored credentials cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
        return MultiFernet([Fernet(derived)])
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        # Never echo the key itself.
        raise ImproperlyConfigured(f"CXM_CREDENTIALS_KEYS holds an invalid Fernet key: {exc}") from None


def _current() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIALS_KEYS), settings.SECRET_KEY)


def encrypt_json(value: dict[str, Any]) -> str:
    if not value:
        return ""
    return _current().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_current().decrypt(token.encode()))
    except InvalidToken:
        raise CredentialsUnreadable(
            "stored credentials cannot be decrypted with the configured keys"
        ) from None


def encrypt_text(value: str) -> str:
    """One secret string (an alert webhook's secret); empty stays empty, meaning "none set"."""
    if not value:
        return ""
    return _current().encrypt(value.encode()).decode()


def decrypt_text(token: str) -> str:
    if not token:
        return ""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialsUnreadable("a stored secret cannot be decrypted with the configured keys") from None


@dataclass(frozen=True)
class EncryptedColumn:
    model: str  # "app_label.ModelName"
    field: str  # a text column of Fernet tokens, "" when empty


_COLUMNS: dict[tuple[str, str], EncryptedColumn] = {}


def encrypted_column(model: str, field: str) -> EncryptedColumn:
    """Declare a column of ciphertext, for `rotate_credentials` to re-encrypt."""
    column = EncryptedColumn(model, field)
    _COLUMNS[(model, field)] = column
    return column


def encrypted_columns() -> list[EncryptedColumn]:
    return sorted(_COLUMNS.values(), key=lambda column: (column.model, column.field))


def rotate(token: str) -> str:
    """Re-encrypt a token with the newest key."""
    if not token:
        return ""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialsUnreadable(
            "stored credentials cannot be decrypted with the configured keys"
        ) from None
