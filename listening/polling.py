"""Polling actions and connector health.

A poll claims the connector with a lease (a conditional UPDATE, so two workers never poll the
same connector at once), fetches outside any transaction, then stores each page's messages and
the new cursor in one transaction. A crash mid-page therefore loses nothing and the retry stores
nothing twice. Failures, whatever they are, are recorded on the row and back off; they never raise
into the worker. A message of the page that cannot be stored (a poisoned item) is left out,
logged and named in the cursor's "skipped" (the last 20), and the page's other messages are stored
and the cursor moves on: one hostile message never stops a source.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from cxm.exceptions import CXMError
from listening.actions import IngestResult, ingest_messages
from listening.connectors import UnknownConnectorKind, get_connector_class
from listening.connectors.base import InboundMessage
from listening.crypto import CredentialsUnreadable
from listening.exceptions import PayloadInvalid, ProviderError, ProviderRateLimited
from listening.models import Connector, Health
from listening.sanitize import clean_text
from listening.signals import connector_failing

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_BACKOFF_SECONDS = 3600
FAILING_AFTER = 3  # consecutive failures before a connector shows as failing
SKIPPED_KEPT = 20  # skipped messages named in the cursor


@dataclass
class PollOutcome:
    polled: bool
    pages: int = 0
    created: int = 0
    duplicates: int = 0
    skipped: int = 0
    error: str = ""


def due_polling_connector_ids(now=None) -> list[int]:
    """Enabled connectors whose kind polls and whose next poll time has come."""
    now = now or timezone.now()
    rows = Connector.objects.filter(enabled=True).filter(
        Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    )
    due = []
    for row in rows.only("id", "kind", "config"):
        try:
            backend_class = get_connector_class(row.kind)
        except UnknownConnectorKind:
            continue
        if backend_class.polls and backend_class.wants_polling(row.config or {}):
            due.append(row.pk)
    return due


def poll_connector(connector_id: int, *, max_pages: int = 20, force: bool = False) -> PollOutcome:
    """Poll one connector from its cursor, storing what is new. Never raises ProviderError."""
    now = timezone.now()
    claimable = Connector.objects.filter(pk=connector_id, enabled=True)
    if not force:
        claimable = claimable.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
    if not claimable.update(next_poll_at=now + LEASE):
        return PollOutcome(polled=False)
    connector = Connector.objects.get(pk=connector_id)
    outcome = PollOutcome(polled=True)
    backend = None
    try:
        backend = connector.get_backend()
        for _ in range(max_pages):
            page = backend.poll(dict(connector.cursor or {}))
            with transaction.atomic():
                stored, skipped = store_page(connector, page.messages)
                cursor = with_skipped(page.cursor, connector.cursor, skipped)
                Connector.objects.filter(pk=connector.pk).update(cursor=cursor)
            connector.cursor = cursor
            outcome.pages += 1
            outcome.created += stored.created
            outcome.duplicates += stored.duplicates
            outcome.skipped += len(skipped)
            if skipped:
                record_skipped(connector, skipped)
            if not page.more:
                break
    except (ProviderError, CXMError, CredentialsUnreadable) as exc:
        outcome.error = str(exc)
        record_failure(connector, exc)
        return outcome
    except (OperationalError, InterfaceError):
        # The database itself failed (or the worker is dying): nothing can be recorded now; the
        # lease runs out and another poll resumes from the committed cursor.
        raise
    except Exception as exc:  # a bug or an unforeseen answer: recorded and backed off like any failure
        logger.exception("connector %s: poll failed unexpectedly", connector.pk)
        outcome.error = f"{type(exc).__name__}: {exc}"
        record_failure(connector, exc)
        return outcome
    finally:
        save_rate_limit(connector.pk, backend)
    record_success(connector)
    return outcome


# Errors that belong to one message (a value the database refuses, an id too long), not to the
# database or the network: retrying the page would fail the same way forever.
ITEM_ERRORS = (DataError, IntegrityError, PayloadInvalid, ValueError, TypeError, OverflowError)


def store_page(connector: Connector, messages: list[InboundMessage]) -> tuple[IngestResult, list[dict]]:
    """Store a page; if it fails on a message, store its messages one by one and return those
    that could not be stored as {"id", "reason"}. Each try runs in a savepoint, so a refused
    message leaves nothing behind. Connection failures (OperationalError) are not an item's
    fault: they raise, and the page is polled again."""
    try:
        with transaction.atomic():
            return ingest_messages(connector, messages), []
    except ITEM_ERRORS:
        pass
    result, skipped, errors = IngestResult(), [], []
    for message in messages:
        try:
            with transaction.atomic():
                result.merge(ingest_messages(connector, [message]))
        except ITEM_ERRORS as exc:
            logger.warning("connector %s: message %r skipped: %s", connector.pk, message.external_id[:100], exc)
            errors.append(exc)
            skipped.append({"id": clean_text(message.external_id, 100),
                            "reason": clean_text(f"{type(exc).__name__}: {exc}", 300)})
    if len(messages) > 1 and len(errors) == len(messages) and len({type(e) for e in errors}) == 1:
        # Every message failing the same way is our bug, not a poisoned item: fail the poll
        # (recorded, backed off, the cursor kept) rather than skip a whole page.
        raise errors[0]
    return result, skipped


def with_skipped(cursor: dict, previous: dict | None, skipped: list[dict]) -> dict:
    """The page's cursor, naming the skipped messages (the last SKIPPED_KEPT). A connector that
    keeps its own "skipped" list (email) carries it forward; others get the previous one here."""
    if not skipped:
        return cursor
    earlier = cursor.get("skipped", (previous or {}).get("skipped", []))
    earlier = earlier if isinstance(earlier, list) else []
    return {**cursor, "skipped": [*earlier, *skipped][-SKIPPED_KEPT:]}


def record_skipped(connector: Connector, skipped: list[dict]) -> None:
    """Say on the connector that messages were left out: last_error names them (the source is
    still healthy, so health and the failure count are left alone)."""
    names = ", ".join(f"{item['id']} ({item['reason']})" for item in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    Connector.objects.filter(pk=connector.pk).update(
        last_error=f"skipped {len(skipped)} message(s) that could not be stored: {names}{more}"[:2000],
        last_error_at=timezone.now(),
    )


def save_rate_limit(connector_id: int, backend) -> None:
    """Keep the headroom the provider reported in its latest answer, for the Sources page."""
    limit = getattr(backend, "rate_limit", None)
    if limit is None:
        return
    Connector.objects.filter(pk=connector_id).update(rate_limit={
        "remaining": limit.remaining, "limit": limit.limit,
        "resets_at": limit.resets_at.isoformat() if limit.resets_at else None,
        "seen_at": timezone.now().isoformat(),
    })


def record_success(connector: Connector) -> None:
    now = timezone.now()
    Connector.objects.filter(pk=connector.pk).update(
        health=Health.OK,
        consecutive_failures=0,
        last_success_at=now,
        next_poll_at=now + timedelta(seconds=connector.poll_interval_seconds),
    )


def record_failure(connector: Connector, exc: Exception) -> None:
    """Store the failure on the row and schedule the next try with exponential backoff and
    jitter, never sooner than the provider's Retry-After."""
    failures = connector.consecutive_failures + 1
    delay = backoff_seconds(connector.poll_interval_seconds, failures)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:  # already capped at a day by ProviderError
        delay = max(delay, retry_after)
    now = timezone.now()
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    level = logging.INFO if isinstance(exc, ProviderRateLimited) else logging.WARNING
    logger.log(level, "connector %s poll failed (%d in a row): %s", connector.pk, failures, reason)
    Connector.objects.filter(pk=connector.pk).update(
        health=Health.FAILING if failures >= FAILING_AFTER else Health.DEGRADED,
        consecutive_failures=F("consecutive_failures") + 1,
        last_error=reason,
        last_error_at=now,
        next_poll_at=now + timedelta(seconds=delay),
    )
    if failures == FAILING_AFTER:  # once, when it starts failing
        transaction.on_commit(lambda: connector_failing.send_robust(
            sender=Connector, connector_id=connector.pk, reason=reason))


def backoff_seconds(interval: int, failures: int) -> float:
    base = min(MAX_BACKOFF_SECONDS, max(1, interval) * 2 ** min(failures, 16))
    return base * random.uniform(0.8, 1.2)
