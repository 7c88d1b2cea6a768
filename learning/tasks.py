"""Celery tasks of the learning app. They run on their own queue (settings.CXM_LEARNING_QUEUE),
are acknowledged only when done (acks_late: a killed worker's task is redelivered) and are
idempotent, so a redelivery or a retry never stores a message's result twice."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from learning import actions

log = logging.getLogger(__name__)

MAX_RETRIES = 3
SWEEP_LIMIT = 5000


def enqueue(message_ids) -> int:
    """Queue messages for classification in micro-batches of CXM_CLASSIFY_BATCH."""
    ids = sorted(set(message_ids))
    size = settings.CXM_CLASSIFY_BATCH
    for start in range(0, len(ids), size):
        classify_messages.delay(ids[start : start + size])
    return len(ids)


@shared_task(name="learning.classify_messages", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=MAX_RETRIES)
def classify_messages(self, message_ids, force=False):
    if not force and not self.request.is_eager:
        message_ids = _with_waiting(message_ids)
    try:
        return len(actions.classify_messages(message_ids, force=force).classified)
    except Exception as exc:
        # Retrying in-process (eager mode, the zero-setup default) would only repeat the failure at
        # once; go straight to the per-message pass there.
        if self.request.retries < MAX_RETRIES and not self.request.is_eager:
            log.warning("classification of %d messages failed, retrying: %r", len(message_ids), exc)
            raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
        return _one_by_one(message_ids, force)


def _with_waiting(message_ids) -> list[int]:
    """Top a small batch up with other messages that arrived recently and wait for their own
    task: single-message deliveries are then classified together, in one encoder pass, and their
    own tasks find them done (classification is idempotent). Several workers may pick the same
    waiting message; the second one skips it."""
    ids = list(dict.fromkeys(message_ids))
    room = settings.CXM_CLASSIFY_BATCH - len(ids)
    if room <= 0 or not settings.CXM_CLASSIFY_COALESCE:
        return ids
    since = timezone.now() - timedelta(minutes=10)
    waiting = (actions.unclassified_messages(older_than=timedelta(0)).filter(received_at__gte=since)
               .exclude(pk__in=ids).order_by("pk").values_list("pk", flat=True)[:room])
    return ids + list(waiting)


def _one_by_one(message_ids, force) -> int:
    """Last attempt: one message at a time, so one bad message cannot fail its batch-mates; what
    still fails is marked failed with the reason."""
    done = 0
    for message_id in message_ids:
        try:
            done += len(actions.classify_messages([message_id], force=force).classified)
        except Exception as exc:  # noqa: BLE001 - the reason is stored on the message's result
            log.exception("classification of message %s failed", message_id)
            actions.mark_failed([message_id], f"{type(exc).__name__}: {exc}")
    return done


@shared_task(name="learning.sweep_unclassified", acks_late=True)
def sweep_unclassified():
    """Beat task: enqueue inbound messages that have no result (a lost task, a killed worker)."""
    ids = list(actions.unclassified_messages().order_by("pk").values_list("pk", flat=True)[:SWEEP_LIMIT])
    if ids:
        log.info("sweep: %d unclassified messages re-enqueued", len(ids))
    return enqueue(ids)


@shared_task(name="learning.retrain_intents", acks_late=True, max_retries=MAX_RETRIES)
def retrain_intents():
    """Refit the intent head after admins edited intents or examples. Workers switch to it within
    seconds (actions.INTENT_CHECK_SECONDS)."""
    row = actions.fit_intents()
    return row.version if row else None
