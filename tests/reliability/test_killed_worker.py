"""A worker killed mid-batch loses nothing and doubles nothing: a real Celery worker with
production's thread pool (`-P threads`) on Redis classifies and routes a stream of messages, is
SIGKILLed with tasks in hand, and a new worker finishes the work once the broker's visibility
timeout hands those tasks back. This tests acks_late, reject_on_worker_lost and
CELERY_BROKER_TRANSPORT_OPTIONS for real (a short visibility timeout here, through the same
environment variable production reads)."""

from __future__ import annotations

import pytest
import redis
from django.db import connection
from django.db.models import Sum

from learning.models import Classification, Rollup
from listening.models import Conversation, Message
from responses.models import Case, ConsoleEvent, Team
from responses.teams import ensure_default_queues
from tests.listening.helpers import signed_webhook_post
from tests.reliability.conftest import kill_worker_once, start_worker, stop_worker, wait_for

MESSAGES, CUSTOMERS, BATCH = 240, 60, 4
VISIBILITY_SECONDS = 10
COMPLAINTS = [
    "My order never arrived and support ignores me. Refund now!",
    "The app crashes every time I open my cart, fix it",
    "I was charged twice this month and nobody answers",
    "Still waiting for the replacement you promised, this is unacceptable",
]
# The killed worker and its successor: production's pool, several threads, a short visibility
# timeout (so the dead worker's tasks come back within the test) and small batches (many tasks).
WORKER_ENV = {"CXM_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_SECONDS), "CXM_CLASSIFY_BATCH": str(BATCH),
              "CXM_TORCH_THREADS": "1"}


@pytest.fixture(autouse=True)
def default_intents(transactional_db):
    """Transactional tests flush the tables, data-migration rows included: put the intents back."""
    from learning.default_intents import install
    from learning.models import Intent, IntentExample, PriorityWeights

    install(Intent, IntentExample, PriorityWeights)


def _deliver(client, connector) -> None:
    for start in range(0, MESSAGES, 40):
        body = {"messages": [
            {"id": f"k{i}", "text": f"{COMPLAINTS[i % len(COMPLAINTS)]} (#{i})",
             "thread_id": f"t{i % CUSTOMERS}",
             "author": {"id": f"cust{i % CUSTOMERS}", "name": f"Customer {i % CUSTOMERS}"}}
            for i in range(start, min(start + 40, MESSAGES))]}
        response = signed_webhook_post(client, connector, body)
        assert response.status_code == 200, response.content


def test_a_worker_killed_mid_batch_leaves_every_task_done_exactly_once(celery_queue, client, make_connector,
                                                                       settings):
    if connection.vendor != "postgresql":  # CI runs on PostgreSQL, so this never skips there
        pytest.skip("several worker threads writing at once need PostgreSQL; SQLite is the one-process trial")
    queue, redis_url = celery_queue
    broker = redis.Redis.from_url(redis_url)
    broker.delete("unacked", "unacked_index")  # kombu's keys of tasks delivered and not yet acknowledged
    settings.CXM_CLASSIFY_BATCH = BATCH  # the tasks this process enqueues on ingestion
    team = Team.objects.create(name="Care A", slug="care-a")
    ensure_default_queues(team)
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"})
    team.connectors.add(connector)
    _deliver(client, connector)
    assert Message.objects.count() == MESSAGES and Conversation.objects.count() == CUSTOMERS

    # Kill it while it works: some messages classified, tasks still in hand. (The worker loads
    # the model first: over 180 s at a load average of 20 on 2 shared cores.)
    kill_worker_once(queue, redis_url,
                     lambda: Classification.objects.count() >= 3 * BATCH and broker.hlen("unacked") > 0,
                     Classification.objects.count, timeout=600, concurrency=4, extra_env=WORKER_ENV)
    done_at_kill = Classification.objects.count()
    held = broker.hlen("unacked")
    assert done_at_kill < MESSAGES, "the worker finished before it was killed: the test proved nothing"
    assert held > 0, "the killed worker held no task"

    current = Classification.objects.filter(is_current=True)
    second = start_worker(queue, redis_url, pool="threads", concurrency=4, extra_env=WORKER_ENV)
    try:
        finished = wait_for(lambda: (current.filter(status="ok").count() == MESSAGES
                                     and Case.objects.count() == CUSTOMERS and broker.hlen("unacked") == 0),
                            timeout=240)
        assert finished, (current.count(), Case.objects.count(), broker.hlen("unacked"), second.poll())
    finally:
        stop_worker(second)

    # Every effect once: one current classification per message, each counted once in the
    # dashboards' rollups (a task run twice moves a message between rollup rows, never adds it
    # again), one case per customer, opened once.
    assert current.count() == MESSAGES and current.values("message").distinct().count() == MESSAGES
    hourly = Rollup.objects.filter(grain="h", dim="sentiment", term_id=0).aggregate(n=Sum("count"))["n"]
    assert hourly == MESSAGES
    assert Case.objects.filter(team=team).count() == CUSTOMERS
    assert ConsoleEvent.objects.filter(type="case.created").count() == CUSTOMERS
    assert set(Case.objects.values_list("conversation_id", flat=True)) == set(
        Conversation.objects.values_list("pk", flat=True))
    assert broker.llen(f"{queue}-learning") == 0 and broker.llen(queue) == 0
