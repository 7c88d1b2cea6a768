"""Celery shell around signal retention (listening.signal_actions.prune_signals)."""

from __future__ import annotations

from celery import shared_task

from listening import signal_actions


@shared_task(name="listening.prune_signals", acks_late=True, ignore_result=True)
def prune_signals(**kwargs) -> int:
    """Beat: delete signals older than CXM_SIGNAL_RETENTION_DAYS."""
    return signal_actions.prune_signals()
