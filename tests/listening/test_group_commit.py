"""Group commit of concurrent single-message webhook deliveries (listening.group_commit), through
the deployment's ASGI application (cxm.asgi) with Channels' HttpCommunicator, on real
PostgreSQL: deliveries in flight together are stored by one transaction, each answered 200 only
once its row is committed; a bad delivery gets its own 4xx; a batch that fails is stored again
delivery by delivery."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.testing import HttpCommunicator
from django.db import connection

from listening import group_commit as group_commit_module
from listening.connectors.webhook import sign
from listening.models import Connector, Message
from tests.listening.test_ingest import announced  # noqa: F401 - the announcements fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="counts transactions by PostgreSQL's xmin"),
]

SECRET = "s3cret"


@pytest.fixture
def batcher(monkeypatch):
    """A fresh batcher that waits long enough for every delivery of a test to join one batch."""
    fresh = group_commit_module.GroupCommit(max_batch=64, wait_s=0.5)
    monkeypatch.setattr(group_commit_module, "_group_commit", fresh)
    return fresh


@pytest.fixture(autouse=True)
def classification_off(settings, announced):  # noqa: F811
    """The announcements of stored messages, with classification off: in tests Celery runs
    eagerly, and the first classification (loading the model) would outlast a delivery's
    timeout; what is announced is what these tests check."""
    settings.CXM_CLASSIFY_ON_INGEST = False


@pytest.fixture
def connector(make_connector):
    return make_connector("webhook", slug="group-chat", credentials={"signing_secret": SECRET})


@pytest.fixture
def application():
    from cxm.asgi import application

    return application


def _message(external_id: str, author: str = "cust-g") -> dict:
    return {"id": external_id, "text": f"message {external_id}", "author": {"id": author, "name": "Ada"},
            "thread_id": f"thread-{author}", "sent_at": "2026-11-01T10:00:00Z"}


def _signed(payload, *, secret: str = SECRET) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in sign(secret, int(time.time()), body).items()]
    return body, headers


def _committed(external_ids: list[str]) -> dict[str, int]:
    """external id -> xmin (the id of the transaction that inserted the row), read on a connection
    of its own: only committed rows are visible to it."""
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT external_id, xmin::text::bigint FROM listening_message "
                           "WHERE external_id = ANY(%s)", [external_ids])
            return dict(cursor.fetchall())
    finally:
        other.close()


def _deliver_all(application, slug: str, bodies: list) -> list[tuple[dict, dict[str, int]]]:
    """Send every delivery at once; for each, its answer and what was committed the moment it came."""

    async def one(payload) -> tuple[dict, dict[str, int]]:
        body, headers = _signed(payload) if not isinstance(payload, tuple) else payload
        communicator = HttpCommunicator(application, "POST", f"/hooks/{slug}/", body=body, headers=headers)
        response = await communicator.get_response(timeout=30)
        ids = [payload["id"]] if isinstance(payload, dict) and "id" in payload else []
        seen = await asyncio.get_running_loop().run_in_executor(None, _committed, ids) if ids else {}
        return response, seen

    async def run():
        return await asyncio.gather(*(one(payload) for payload in bodies))

    return asyncio.run(run())


def _status(response: dict) -> int:
    return response["status"]


@pytest.fixture
def slow_commit():
    """A deferred constraint trigger that sleeps at COMMIT (real PostgreSQL, no mock): an answer
    sent before the commit finished would find its row not yet visible."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON listening_message "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_slow_commit ON listening_message")
        cursor.execute("DROP FUNCTION test_slow_commit()")


def test_concurrent_deliveries_share_one_commit_and_are_answered_after_it(application, connector, batcher,
                                                                          slow_commit, announced):  # noqa: F811
    payloads = [_message(f"g{i}", author=f"a{i % 3}") for i in range(8)]
    answers = _deliver_all(application, connector.slug, payloads)

    for payload, (response, seen) in zip(payloads, answers, strict=True):
        assert _status(response) == 200, response["body"]
        assert json.loads(response["body"]) == {"stored": 1, "duplicates": 0}
        assert payload["id"] in seen, "answered 200 before its row was committed"
    xmins = set(_committed([p["id"] for p in payloads]).values())
    assert len(xmins) == 1, f"8 deliveries in {len(xmins)} transactions"
    assert (batcher.stats.batches, batcher.stats.grouped, batcher.stats.single) == (1, 8, 0)
    connector.refresh_from_db()
    assert connector.messages_received == 8
    assert Message.objects.filter(connector=connector).count() == 8
    assert len(announced) == 1 and len(announced[0]) == 8  # one announcement for the batch


def test_a_malformed_delivery_gets_its_4xx_while_the_others_land(application, connector, batcher):
    good = [_message(f"ok{i}") for i in range(3)]
    too_long = _message("x" * 300)  # parses, refused by ingestion's id check
    unsigned = _signed(_message("forged"), secret="wrong")
    not_json = _signed(b"{not json")
    answers = _deliver_all(application, connector.slug, [*good, too_long, unsigned, not_json])

    statuses = [_status(response) for response, _ in answers]
    assert statuses[:3] == [200, 200, 200]
    assert all(400 <= status < 500 for status in statuses[3:]), statuses
    assert "reason" in json.loads(answers[3][0]["body"]) or json.loads(answers[3][0]["body"])
    committed = _committed([m["id"] for m in good])
    assert set(committed) == {m["id"] for m in good}
    assert len(set(committed.values())) == 1  # the good ones still shared their commit
    assert not Message.objects.filter(external_id__in=["forged", "x" * 300]).exists()
    connector.refresh_from_db()
    assert connector.deliveries_rejected == 3


def test_duplicates_across_one_batch_are_stored_once(application, connector, batcher):
    twice_within = {"messages": [_message("d2"), _message("d2")]}
    answers = _deliver_all(application, connector.slug, [_message("d1"), _message("d1"), twice_within])

    bodies = [json.loads(response["body"]) for response, _ in answers]
    assert all(_status(response) == 200 for response, _ in answers)
    assert sorted(body["stored"] for body in bodies[:2]) == [0, 1]  # one of the two stored d1
    assert sorted(body["duplicates"] for body in bodies[:2]) == [0, 1]
    assert bodies[2] == {"stored": 1, "duplicates": 1}
    assert Message.objects.filter(external_id="d1").count() == 1
    assert Message.objects.filter(external_id="d2").count() == 1
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (2, 2)


@pytest.fixture
def one_row_per_statement():
    """A real PostgreSQL error for any INSERT of more than one message in one statement: a group
    commit of single deliveries fails, each delivery stored alone does not."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_one_row() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF (SELECT count(*) FROM new_rows) > 1 THEN "
            "RAISE EXCEPTION 'one row per statement' USING ERRCODE = 'serialization_failure'; END IF; "
            "RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_one_row AFTER INSERT ON listening_message REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION test_one_row()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_one_row ON listening_message")
        cursor.execute("DROP FUNCTION test_one_row()")


def test_a_batch_that_fails_is_stored_delivery_by_delivery(application, connector, batcher,
                                                           one_row_per_statement):
    payloads = [_message(f"f{i}", author=f"a{i}") for i in range(5)]
    answers = _deliver_all(application, connector.slug, payloads)

    for payload, (response, seen) in zip(payloads, answers, strict=True):
        assert _status(response) == 200, response["body"]
        assert json.loads(response["body"]) == {"stored": 1, "duplicates": 0}
        assert payload["id"] in seen
    committed = _committed([p["id"] for p in payloads])
    assert len(committed) == 5 and len(set(committed.values())) == 5  # one transaction each
    assert (batcher.stats.fallbacks, batcher.stats.batches, batcher.stats.single) == (1, 0, 5)
    connector.refresh_from_db()
    assert connector.messages_received == 5
    assert Connector.objects.get(pk=connector.pk).duplicates_received == 0


def test_handshakes_and_rejections_answer_without_a_batch(application, connector, batcher):
    async def run():
        communicator = HttpCommunicator(application, "POST", "/hooks/no-such-connector/", body=b"{}",
                                        headers=[(b"host", b"testserver")])
        return await communicator.get_response(timeout=30)

    response = asyncio.run(run())
    assert response["status"] == 404
    assert json.loads(response["body"])
    assert batcher.stats.batches == 0


def test_the_sync_client_stores_each_delivery_alone(client, connector, batcher):
    from tests.listening.helpers import signed_webhook_post

    response = signed_webhook_post(client, connector, _message("s1"))
    assert response.status_code == 200
    assert json.loads(response.content) == {"stored": 1, "duplicates": 0}
    assert batcher.stats.sizes == []  # Django's test client takes the sync view, not the batcher
