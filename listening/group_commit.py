"""Group commit of concurrent single-message webhook deliveries (issue 19).

Under ASGI (cxm.middleware.WebhookASGIHandler) a delivery to /hooks/<ref>/ is handed from the
event loop to this process's one webhook thread. That thread takes whatever deliveries arrived
while it was busy (or within WAIT_S of the first, at most MAX_BATCH), verifies and parses each on
its own (a 4xx stays that delivery's), stores all their messages in ONE transaction through the
batch ingest path (listening.actions.ingest_deliveries) and only after that COMMIT answers each
delivery: a delivery answered 200 is durable, as before. A batch that raises is rolled back and
each of its deliveries is stored again on its own (listening.webhooks.finish_webhook), so one
delivery's bad item or a deadlock costs nobody a message.

Why: a single-message delivery paid a dozen statements, a COMMIT with its WAL flush and a thread
of its own; under load most of a web process's CPU. Batched, those are paid once per batch.

The sync view (WSGI, Django's test clients) stores each delivery on its own, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from django import db
from django.conf import settings

from listening import webhooks
from listening.actions import ingest_deliveries
from listening.connectors.base import WebhookRequest

logger = logging.getLogger(__name__)


@dataclass
class _Delivery:
    ref: str
    request: WebhookRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    settled: bool = False


@dataclass
class Stats:
    """Counters for tests and benches: how many deliveries went through how many transactions."""

    batches: int = 0  # group transactions committed (batches of two or more stored deliveries)
    grouped: int = 0  # deliveries stored by those transactions
    single: int = 0  # deliveries stored alone (a batch of one, or the fallback)
    fallbacks: int = 0  # batches that raised and were stored per delivery
    sizes: list[int] = field(default_factory=list)  # deliveries per batch taken, last 1,000


class GroupCommit:
    def __init__(self, max_batch: int, wait_s: float, threads: int = 1) -> None:
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.threads = threads
        self.stats = Stats()
        self._pending: list[_Delivery] = []
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    async def submit(self, ref: str, request: WebhookRequest) -> webhooks.WebhookOutcome:
        """Answer one delivery once it is committed (or raise its DeliveryRejected)."""
        loop = asyncio.get_running_loop()
        delivery = _Delivery(ref, request, loop, loop.create_future())
        with self._cond:
            if len(self._threads) < self.threads:
                for i in range(len(self._threads), self.threads):
                    thread = threading.Thread(target=self._run, name=f"webhook-group-commit-{i}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._pending.append(delivery)
            self._cond.notify()
        return await delivery.future

    def _take(self) -> list[_Delivery]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            # Deliveries that arrived while the last batch was stored are taken at once; a lone
            # one waits up to wait_s for company (a few ms against a commit's WAL flush).
            deadline = time.monotonic() + self.wait_s
            while len(self._pending) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                self._store(batch)
            except BaseException as exc:  # a bug here must not leave deliveries waiting forever
                logger.exception("webhook group commit failed")
                for delivery in batch:
                    _settle(delivery, exc=exc)
            finally:
                # As a request ends: the connection goes back to the pool (CONN_MAX_AGE=0), and a
                # broken one is not reused by the next batch.
                db.close_old_connections()

    def _store(self, batch: list[_Delivery]) -> None:
        sizes = self.stats.sizes
        sizes.append(len(batch))
        if len(sizes) > 1000:
            del sizes[:500]
        db.close_old_connections()
        ready: list[tuple[_Delivery, webhooks.PreparedDelivery]] = []
        for delivery in batch:
            try:
                prepared = webhooks.prepare_webhook(delivery.ref, delivery.request)
                if isinstance(prepared, webhooks.WebhookOutcome):
                    _settle(delivery, prepared)
                    continue
                webhooks.check_delivery(prepared)
            except Exception as exc:  # a 4xx (DeliveryRejected) or a 500, this delivery's alone
                _settle(delivery, exc=exc)
                continue
            ready.append((delivery, prepared))
        if len(ready) > 1:
            try:
                results = ingest_deliveries([(p.connector, p.messages) for _, p in ready])
            except Exception as exc:
                # Rolled back: nothing of the batch is stored. Each delivery alone, as without
                # group commit; its own error (a 4xx for a bad item) is its own answer.
                logger.warning("webhook group commit of %d deliveries failed (%r); storing each alone",
                               len(ready), exc)
                self.stats.fallbacks += 1
                db.close_old_connections()
            else:
                self.stats.batches += 1
                self.stats.grouped += len(ready)
                for (delivery, prepared), result in zip(ready, results, strict=True):
                    _answer(delivery, lambda p=prepared, r=result: webhooks.answer_webhook(p, r))
                return
        for delivery, prepared in ready:
            self.stats.single += 1
            _answer(delivery, lambda p=prepared: webhooks.finish_webhook(p))


def _answer(delivery: _Delivery, build) -> None:
    try:
        outcome = build()
    except Exception as exc:
        _settle(delivery, exc=exc)
    else:
        _settle(delivery, outcome)


def _settle(delivery: _Delivery, outcome: webhooks.WebhookOutcome | None = None, *,
            exc: BaseException | None = None) -> None:
    if delivery.settled:
        return
    delivery.settled = True

    def settle() -> None:
        if delivery.future.done():  # the client went away and the view was cancelled
            return
        if exc is not None:
            delivery.future.set_exception(exc)
        else:
            delivery.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        delivery.loop.call_soon_threadsafe(settle)


_group_commit: GroupCommit | None = None
_lock = threading.Lock()


def group_commit() -> GroupCommit:
    """This process's batcher, made on first use."""
    global _group_commit
    with _lock:
        if _group_commit is None:
            _group_commit = GroupCommit(settings.WEBHOOK_GROUP_COMMIT_MAX, settings.WEBHOOK_GROUP_COMMIT_WAIT_MS / 1000,
                                        settings.WEBHOOK_GROUP_COMMIT_THREADS)
        return _group_commit

