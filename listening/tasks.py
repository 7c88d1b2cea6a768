"""Celery shells around listening actions. Tasks take ids and are idempotent."""

from __future__ import annotations

from celery import shared_task
from django.dispatch import receiver

from listening import backfill, polling, signals
from listening.signal_tasks import prune_signals  # noqa: F401 - registers listening.prune_signals


@shared_task(name="listening.poll_due_connectors", ignore_result=True)
def poll_due_connectors(**kwargs) -> int:
    """Beat entry point: enqueue a poll for each connector that is due."""
    due = polling.due_polling_connector_ids()
    for connector_id in due:
        poll_connector.delay(connector_id)
    return len(due)


@shared_task(name="listening.poll_connector", ignore_result=True)
def poll_connector(connector_id: int, **kwargs) -> dict:
    outcome = polling.poll_connector(connector_id)
    return outcome.__dict__


@shared_task(name="listening.backfill_connector", ignore_result=True)
def backfill_connector(connector_id: int, **kwargs) -> dict:
    return backfill.run(connector_id)


@receiver(signals.backfill_requested, dispatch_uid="listening.queue_backfill")
def queue_backfill(sender, connector_id: int, **kwargs) -> None:
    backfill_connector.delay(connector_id)
