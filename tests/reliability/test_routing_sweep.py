"""A classified message whose routing task died with its worker is still routed, once.

The broker hands a SIGKILLed worker's tasks back only after its visibility timeout (10 minutes in
production). The routing sweep (beat, responses.tasks.sweep_unrouted) finds classified messages
that no router has claimed and routes them; routing claims each classification once
(responses.models.RoutingClaim), so when the lost tasks do come back they change nothing. Here the
visibility timeout is an hour: only the sweep can route what the killed worker held."""

from __future__ import annotations

import pytest
import redis
from django.db import connection

from learning.models import Classification
from listening.models import Conversation, Message
from responses.models import AgentProfile, Case, ConsoleEvent, Presence, Role, RoutingClaim, Team
from responses.tasks import route_messages, sweep_unrouted
from responses.teams import ensure_default_queues
from tests.listening.helpers import signed_webhook_post
from tests.reliability.conftest import kill_worker_once, start_worker, stop_worker, wait_for

MESSAGES, PER_TASK = 150, 3
WORKER_ENV = {"CXM_BROKER_VISIBILITY_TIMEOUT": "3600"}


def _deliver(client, connector) -> None:
    for start in range(0, MESSAGES, 50):
        body = {"messages": [
            {"id": f"r{i}", "text": f"My order never arrived, refund now (#{i})", "thread_id": f"t{i}",
             "author": {"id": f"cust{i}", "name": f"Customer {i}"}}
            for i in range(start, min(start + 50, MESSAGES))]}
        response = signed_webhook_post(client, connector, body)
        assert response.status_code == 200, response.content


def _classify(ids) -> None:
    """What the learning worker stores (its on-commit signal enqueues routing: done by hand below)."""
    Classification.objects.bulk_create([
        Classification(message_id=pk, lane="issue", sentiment="negative", intent="complaint", emotion="anger",
                       priority=0.6, language="en") for pk in ids])


def _enqueue(ids) -> None:
    for start in range(0, len(ids), PER_TASK):
        route_messages.delay(ids[start:start + PER_TASK])


def _routed_events() -> tuple[int, int]:
    created = ConsoleEvent.objects.filter(type="message.created")
    return created.count(), len({e["message"]["id"] for e in created.values_list("payload", flat=True)})


def test_routing_held_by_a_killed_worker_is_swept_and_routed_once(celery_queue, client, make_connector, settings,
                                                                   django_user_model):
    if connection.vendor != "postgresql":  # CI runs on PostgreSQL, so this never skips there
        pytest.skip("several worker threads writing at once need PostgreSQL; SQLite is the one-process trial")
    queue, redis_url = celery_queue
    broker = redis.Redis.from_url(redis_url)
    broker.delete("unacked", "unacked_index")
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Care A", slug="care-a")
    ensure_default_queues(team)
    agent = django_user_model.objects.create_user("dana", password="x-very-long-password")
    AgentProfile.objects.create(user=agent, role=Role.AGENT, presence=Presence.AVAILABLE, capacity=10_000)
    team.members.add(agent)
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"})
    team.connectors.add(connector)
    _deliver(client, connector)
    ids = sorted(Message.objects.values_list("pk", flat=True))
    assert len(ids) == MESSAGES and Conversation.objects.count() == MESSAGES
    _classify(ids)
    _enqueue(ids)

    kill_worker_once(queue, redis_url, lambda: Case.objects.count() >= 2 * PER_TASK and broker.hlen("unacked") > 0,
                     Case.objects.count, timeout=180, concurrency=2, extra_env=WORKER_ENV)
    held = broker.hlen("unacked")
    assert held > 0, "the killed worker held no task: the test proved nothing"
    assert Case.objects.count() < MESSAGES, "the worker routed everything before it was killed"

    second = start_worker(queue, redis_url, pool="threads", concurrency=2, extra_env=WORKER_ENV)
    try:
        # The rest of the queue is routed; what the dead worker held stays with the broker.
        drained = wait_for(lambda: broker.llen(queue) == 0 and broker.hlen("unacked") == held, timeout=180)
        assert drained, (broker.llen(queue), broker.hlen("unacked"), held, second.poll())
        lost = MESSAGES - RoutingClaim.objects.count()
        assert lost > 0 and Case.objects.count() == MESSAGES - lost

        settings.CXM_ROUTING_SWEEP_GRACE_SECONDS = 0
        assert sweep_unrouted() == lost
        routed = wait_for(lambda: Case.objects.count() == MESSAGES and broker.llen(queue) == 0
                          and broker.hlen("unacked") == held, timeout=120)
        assert routed, (Case.objects.count(), broker.llen(queue), second.poll())
        assert sweep_unrouted() == 0

        # The dead worker's tasks come back at last (here: every task again): nothing changes.
        _enqueue(ids)
        again = wait_for(lambda: broker.llen(queue) == 0 and broker.hlen("unacked") == held, timeout=120)
        assert again, (broker.llen(queue), broker.hlen("unacked"), second.poll())
    finally:
        stop_worker(second)

    assert Case.objects.count() == MESSAGES and RoutingClaim.objects.count() == MESSAGES
    assert ConsoleEvent.objects.filter(type="case.created").count() == MESSAGES
    assert _routed_events() == (MESSAGES, MESSAGES)  # every message shown once
    assert not ConsoleEvent.objects.filter(type="case.updated").exists()  # created already assigned
    assert Case.objects.filter(assignee=agent).count() == MESSAGES
