"""Celery shells around responses.signal_rules (default queue). They take ids and are
idempotent: a retried batch finds its signals already counted in the rules' states."""

from __future__ import annotations

from celery import shared_task

from responses import signal_rules


@shared_task(name="responses.evaluate_signals", acks_late=True, max_retries=5, bind=True)
def evaluate_signals(self, signal_ids, **kwargs) -> int:
    try:
        return len(signal_rules.evaluate_signals(signal_ids))
    except Exception as exc:
        if self.request.is_eager or self.request.retries >= self.max_retries:
            raise
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc


@shared_task(name="responses.evaluate_signal_messages", acks_late=True)
def evaluate_signal_messages(message_ids, **kwargs) -> int:
    return len(signal_rules.evaluate_messages(message_ids))


@shared_task(name="responses.check_signal_absence", acks_late=True)
def check_signal_absence(**kwargs) -> int:
    """Beat: "no signal of type T for N days" rules."""
    return len(signal_rules.check_absence())
