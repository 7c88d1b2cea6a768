"""Backfill: fetch a source's messages from a date, older than what polling has fetched.

An admin starts one from the source's page (responses.views.connect); a worker walks back page by
page through `BaseConnector.backfill`, storing each page and the walk's place in one transaction,
so a crash resumes where it stopped and stores nothing twice. Ingestion dedupes on the message's
external id, so pages that overlap what polling stored are harmless. A failure stops the walk
with the reason and keeps its place: starting again from the same date resumes it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cxm.exceptions import CXMError
from listening import audit, signals
from listening.connectors import get_connector_class
from listening.crypto import CredentialsUnreadable
from listening.exceptions import ProviderError
from listening.models import Connector
from listening.polling import SKIPPED_KEPT, save_rate_limit, store_page

logger = logging.getLogger(__name__)

MAX_DAYS = 366
MAX_PAGES = 500  # per run: a walk this long stops and says so (start again to go on)
LEASE = timedelta(minutes=10)


class BackfillRefused(CXMError):
    status_code = 400
    code = "backfill_refused"


class BackfillRunning(BackfillRefused):
    status_code = 409
    code = "backfill_running"


def start(connector: Connector, since: datetime, *, actor=None, ip: str | None = None) -> dict:
    """Record a backfill from `since` on the row and queue the worker that runs it."""
    _check(connector, since)
    previous = connector.backfill or {}
    resuming = bool(previous.get("since") == since.isoformat() and previous.get("error") and previous.get("state"))
    kept = previous if resuming else {}  # a stopped walk from the same date goes on from its place
    job = {
        "since": since.isoformat(), "state": kept.get("state", {}), "pages": kept.get("pages", 0),
        "created": kept.get("created", 0), "duplicates": kept.get("duplicates", 0),
        "started_at": timezone.now().isoformat(), "finished_at": None, "error": "", "running_until": None,
    }
    before = audit.snapshot(connector)
    Connector.objects.filter(pk=connector.pk).update(backfill=job)
    connector.backfill = job
    audit.record(actor, "backfill", connector, before, audit.snapshot(connector), ip=ip,
                 extra={"backfill": {"since": job["since"], "resumed": resuming}})

    transaction.on_commit(lambda: signals.backfill_requested.send(sender=Connector, connector_id=connector.pk))
    return job


def progress(job: dict | None) -> dict:
    """What a page shows of a backfill: everything but the connector's place in the walk."""
    return {k: v for k, v in (job or {}).items() if k != "state"}


def _check(connector: Connector, since: datetime) -> None:
    backend_class = get_connector_class(connector.kind)
    if not backend_class.supports_backfill:
        raise BackfillRefused(_why_not(connector, since))
    if not connector.enabled:
        raise BackfillRefused("this source is paused: resume it first")
    now = timezone.now()
    if since > now:
        raise BackfillRefused("the date is in the future")
    if since < now - timedelta(days=MAX_DAYS):
        raise BackfillRefused(f"backfill reaches back at most {MAX_DAYS} days")
    job = connector.backfill or {}
    if job and not job.get("finished_at"):
        raise BackfillRunning("a backfill of this source is already running")


def _why_not(connector: Connector, since: datetime) -> str:
    """The connector's own words for why it cannot backfill (its backfill() refuses at once)."""
    try:
        connector.get_backend().backfill(since, {})
    except (ProviderError, CXMError, CredentialsUnreadable) as exc:
        return str(exc)
    return f"{connector.kind} does not backfill"


def run(connector_id: int, *, max_pages: int = MAX_PAGES) -> dict:
    """Walk the recorded backfill to its end (or max_pages). Never raises ProviderError."""
    if not _claim(connector_id):
        return {}
    connector = Connector.objects.get(pk=connector_id)
    job = dict(connector.backfill)
    since = parse_datetime(job["since"])
    backend = None
    try:
        backend = connector.get_backend()
        for _ in range(max_pages):
            page = backend.backfill(since, dict(job["state"]))
            fresh = [m for m in page.messages if m.sent_at >= since]
            with transaction.atomic():
                stored, skipped = store_page(connector, fresh)  # a poisoned message never stops the walk
                job.update(state=page.cursor, pages=job["pages"] + 1, created=job["created"] + stored.created,
                           duplicates=job["duplicates"] + stored.duplicates)
                if skipped:
                    job["skipped"] = [*job.get("skipped", []), *skipped][-SKIPPED_KEPT:]
                if not page.more:
                    job["finished_at"] = timezone.now().isoformat()
                _save(connector_id, job)
            if not page.more:
                break
        else:
            _stop(connector_id, job, f"stopped after {max_pages} pages: start again to go on")
    except (ProviderError, CXMError, CredentialsUnreadable) as exc:
        logger.warning("backfill of connector %s stopped: %s", connector_id, exc)
        _stop(connector_id, job, f"{type(exc).__name__}: {exc}"[:1000])
    except (OperationalError, InterfaceError):
        raise  # the database failed: nothing can be recorded; the lease runs out and a retry resumes
    except Exception as exc:  # unforeseen: the job says so instead of holding its lease until it runs out
        logger.exception("backfill of connector %s failed unexpectedly", connector_id)
        _stop(connector_id, job, f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        save_rate_limit(connector_id, backend)
    return job


def _claim(connector_id: int) -> bool:
    """Take the job's lease, so two workers never walk the same backfill at once."""
    with transaction.atomic():
        connector = Connector.objects.select_for_update().filter(pk=connector_id).first()
        job = dict(connector.backfill or {}) if connector else {}
        if not job or job.get("finished_at"):
            return False
        until = parse_datetime(job["running_until"]) if job.get("running_until") else None
        now = timezone.now()
        if until and until > now:
            return False
        job["running_until"] = (now + LEASE).isoformat()
        _save(connector_id, job)
    return True


def _stop(connector_id: int, job: dict, reason: str) -> None:
    job.update(error=reason, finished_at=timezone.now().isoformat())
    _save(connector_id, job)


def _save(connector_id: int, job: dict) -> None:
    Connector.objects.filter(pk=connector_id).update(backfill=job)
