"""Credentials a provider renews while we use them, saved as soon as they change (not to be
confused with `manage.py rotate_credentials`, which re-encrypts them under a new key).

Some OAuth 2 providers (X among them) answer a refresh with a new refresh token and void the old
one at once. Kept only in a worker's memory, the new token would be lost with the worker, and the
next worker's refresh, with the voided token, would fail until an admin reconnected the account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from listening import crypto
from listening.models import Connector

Fetch = Callable[[dict[str, Any]], dict[str, Any]]


def renew_credentials(row: Connector, field: str, stale: str, fetch: Fetch) -> dict[str, Any]:
    """Replace credentials that went stale (`field` held `stale` when the provider refused it),
    once across workers, and return the credentials to use from now on.

    Under a lock on the connector's row: while the saved `field` still holds `stale`,
    `fetch(saved)` asks the provider for new values, which are merged in and saved before the lock
    is released; when another worker has renewed them meanwhile, its saved credentials are
    returned without calling the provider (a second refresh with a voided token would fail). A
    `fetch` that raises saves nothing. A row not yet saved (a connection test) is renewed in memory.
    `row` is updated in place, so a later save of it keeps the new values."""
    if row.pk is None:
        updated = {**row.credentials, **fetch(row.credentials)}
    else:
        with transaction.atomic():
            locked = Connector.objects.select_for_update().only("credentials_encrypted").get(pk=row.pk)
            saved = locked.credentials
            if str(saved.get(field) or "") != stale:
                return _keep(row, saved)
            updated = {**saved, **fetch(saved)}
            Connector.objects.filter(pk=row.pk).update(
                credentials_encrypted=crypto.encrypt_json(updated), updated_at=timezone.now())
    return _keep(row, updated)


def _keep(row: Connector, credentials: dict[str, Any]) -> dict[str, Any]:
    row.credentials = credentials
    return credentials
