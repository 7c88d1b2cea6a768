"""The console websocket through the real ASGI stack: auth at connect, origin check, live events
for the user's teams only, catch-up after a disconnect, recovery of dropped doorbells, logout and
team removal, and collision presence."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from responses import event_types, events
from responses.models import ConsoleEvent, Role
from tests.reliability.conftest import _test_database_url
from tests.responses.conftest import PASSWORD, make_user, open_case
from tests.responses.ws import collect_events, communicator, connect, nothing_more, receive_until, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fast_console_poll(settings):
    settings.CXM_CONSOLE_POLL_SECONDS = 1


# A registered team event carries the numbered ticks these tests count (emit refuses unknown types).
TICK = event_types.AGENT_PRESENCE


def tick(n, label: str = "") -> dict:
    return {"agent": None, "presence": "available", "n": n, "label": label}


def emit_many(team_id: int, count: int, label: str) -> list[int]:
    return [events.emit(TICK, tick(i, label), team_id=team_id).pk for i in range(count)]


def test_console_socket_refuses_anonymous_foreign_origin_and_users_without_a_role(agent_a, django_user_model):
    roleless = django_user_model.objects.create_user("nobody", password=PASSWORD)
    roleless_cookie, agent_cookie = session_cookie(roleless), session_cookie(agent_a)

    async def scenario():
        for comm in (communicator(None), communicator(roleless_cookie),
                     communicator(agent_cookie, origin=b"http://evil.example")):
            connected, _code = await comm.connect(timeout=10)
            assert not connected
            await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_pushes_a_new_case_to_its_team_and_not_to_another(connector_a, agent_a, agent_b):
    cookies = session_cookie(agent_a), session_cookie(agent_b)

    async def scenario():
        mine, theirs = await connect(cookies[0]), await connect(cookies[1])
        case = await database_sync_to_async(open_case)(connector_a, "Where is my parcel?")
        seen = await receive_until(mine, lambda m: m["type"] == "events" and any(
            e["type"] == "case.created" for e in m["events"]))
        created = [e for m in seen for e in m.get("events", []) if e["type"] == "case.created"]
        assert created[0]["case_id"] == case.pk
        assert created[0]["case"]["id"] == case.pk and created[0]["case"]["preview"] == "Where is my parcel?"
        assert await nothing_more(theirs, 2.5)  # two polling rounds: still nothing for team B
        await mine.disconnect()
        await theirs.disconnect()

    asyncio.run(scenario())


def test_console_socket_catches_up_500_events_missed_during_a_30s_disconnect(team_a, agent_a):
    """The client drops, 500 events happen over 30 s, the client reconnects with its last id and
    receives every one of them, once, in order."""
    cookie = session_cookie(agent_a)

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        before = await database_sync_to_async(emit_many)(team_a.pk, 3, "before")
        got = await collect_events(comm, 3)
        assert [e["id"] for e in got] == before
        last_seen = got[-1]["id"]
        await comm.disconnect()

        missed: list[int] = []
        started = time.monotonic()
        for _ in range(50):  # 50 bursts of 10 across 30 seconds
            missed += await database_sync_to_async(emit_many)(team_a.pk, 10, "while away")
            await asyncio.sleep(0.6)
        assert time.monotonic() - started >= 30

        comm = await connect(cookie, last_event_id=last_seen)
        got = await collect_events(comm, 500, timeout=30)
        ids = [e["id"] for e in got]
        assert ids == missed  # all 500, none twice, in order
        assert await nothing_more(comm)
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_recovers_events_dropped_by_a_full_channel_layer(settings, team_a, agent_a):
    """With room for one message per channel, a burst of doorbells overflows the layer (channels
    drops what does not fit); the console still gets every event, once."""
    layer = dict(settings.CHANNEL_LAYERS["default"])
    layer["CONFIG"] = {**layer.get("CONFIG", {}), "capacity": 1}
    settings.CHANNEL_LAYERS = {"default": layer}

    cookie = session_cookie(agent_a)

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        emitted = await database_sync_to_async(emit_many)(team_a.pk, 300, "burst")
        got = await collect_events(comm, 300, timeout=20)
        assert [e["id"] for e in got] == emitted
        assert await nothing_more(comm)
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_finds_events_whose_doorbell_never_rang(team_a, agent_a):
    """Events written by another process whose channel layer cannot reach this server (the trial's
    poller, or a dropped doorbell) arrive by the console's own look at the table."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cxm.settings_test", "TEST_DATABASE_NAME": "unused",
           "REDIS_URL": "", "CXM_CLASSIFY_ON_INGEST": "0", "DATABASE_URL": _test_database_url()}
    code = ("from responses.events import emit; from responses.event_types import AGENT_PRESENCE as TICK; "
            f"[emit(TICK, {{'agent': None, 'presence': 'available', 'n': i}}, team_id={team_a.pk}) "
            "for i in range(5)]")

    cookie = session_cookie(agent_a)

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "manage.py", "shell", "-c", code],
                                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        got = await collect_events(comm, 5, timeout=10)
        assert [e["n"] for e in got] == [0, 1, 2, 3, 4]
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_says_bye_within_seconds_of_logout(team_a, agent_a):
    client = Client()
    client.force_login(agent_a)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        await database_sync_to_async(client.post)("/accounts/logout/")
        started = time.monotonic()
        seen = await receive_until(comm, lambda m: m["type"] == "bye", timeout=5)
        assert seen[-1]["reason"] == "logged out"
        assert time.monotonic() - started < 5
        closed = await comm.receive_output(timeout=5)
        assert closed["type"] == "websocket.close"

    asyncio.run(scenario())


def test_console_socket_stops_team_events_when_the_user_leaves_the_team(team_a, agent_a):
    cookie = session_cookie(agent_a)

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        await database_sync_to_async(emit_many)(team_a.pk, 1, "member")
        assert len(await collect_events(comm, 1)) == 1
        await database_sync_to_async(team_a.members.remove)(agent_a)
        await asyncio.sleep(1.5)  # the recheck arrives at once; the poll within a second
        await database_sync_to_async(emit_many)(team_a.pk, 3, "after leaving")
        assert await nothing_more(comm, 2.5)
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_shows_who_else_views_and_types(connector_a, agent_a, agent_a2, agent_b):
    case = open_case(connector_a)
    cookies = session_cookie(agent_a), session_cookie(agent_a2), session_cookie(agent_b)

    async def scenario():
        first, second = await connect(cookies[0]), await connect(cookies[1])
        await first.send_json_to({"type": "view", "case": case.pk})
        await second.send_json_to({"type": "view", "case": case.pk})
        seen = await receive_until(first, lambda m: m["type"] == "presence" and m["viewers"])
        assert seen[-1]["viewers"] == [{"id": agent_a2.pk, "name": "Agent", "typing": False}]
        await second.send_json_to({"type": "typing", "case": case.pk, "typing": True})
        seen = await receive_until(first, lambda m: m["type"] == "presence" and m["viewers"]
                                   and m["viewers"][0]["typing"])
        await second.disconnect()
        seen = await receive_until(first, lambda m: m["type"] == "presence" and not m["viewers"])
        assert seen[-1]["case"] == case.pk

        outsider = await connect(cookies[2])
        await outsider.send_json_to({"type": "view", "case": case.pk})
        answer = await outsider.receive_json_from(timeout=5)
        assert answer == {"type": "error", "reason": "no such case"}
        # The outsider never joined the room: when the next agent joins, the presence first is
        # sent lists that agent alone, and nothing first received on the way named the outsider.
        again = await connect(cookies[1])
        await again.send_json_to({"type": "view", "case": case.pk})
        seen = await receive_until(first, lambda m: m["type"] == "presence" and m["viewers"])
        assert seen[-1]["viewers"] == [{"id": agent_a2.pk, "name": "Agent", "typing": False}]
        assert not [m for m in seen if agent_b.pk in {v["id"] for v in m.get("viewers", [])}], seen
        await again.disconnect()
        await outsider.disconnect()
        await first.disconnect()

    asyncio.run(scenario())


def test_console_socket_answers_malformed_messages_with_an_error(agent_a):
    cookie = session_cookie(agent_a)

    async def scenario():
        comm = await connect(cookie)
        for raw in ("not json", "[1,2]", '{"type": "view", "case": "1 OR 1=1"}', '{"type": "warp"}', "x" * 5000):
            await comm.send_to(text_data=raw)
            answer = await comm.receive_json_from(timeout=5)
            assert answer["type"] == "error" and answer["reason"]
        await comm.send_json_to({"type": "hello", "last_event_id": 0})  # still alive
        assert (await comm.receive_json_from(timeout=5))["type"] == "welcome"
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_event_ids_only_grow(team_a):
    ids = emit_many(team_a.pk, 5, "order")
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert list(ConsoleEvent.objects.filter(pk__in=ids).order_by("id").values_list("payload__n", flat=True)) == [
        0, 1, 2, 3, 4]


def test_console_socket_for_admin_sees_every_team(connector_a, django_user_model, team_b):
    admin = make_user(django_user_model, "boss", Role.ADMIN)
    cookie = session_cookie(admin)

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        await database_sync_to_async(emit_many)(team_b.pk, 2, "b")
        assert len(await collect_events(comm, 2)) == 2
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_asks_a_client_behind_pruned_events_to_reload(team_a, agent_a):
    from django.utils import timezone

    from responses.cases import prune_console_events

    old = emit_many(team_a.pk, 3, "old")
    ConsoleEvent.objects.filter(pk__in=old).update(created_at=timezone.now() - timezone.timedelta(days=30))
    assert prune_console_events(days=7) == 3
    newer = emit_many(team_a.pk, 1, "new")
    cookie = session_cookie(agent_a)

    async def scenario():
        comm = communicator(cookie)
        assert (await comm.connect(timeout=10))[0]
        await comm.send_json_to({"type": "hello", "last_event_id": old[0]})
        assert (await comm.receive_json_from(timeout=5))["type"] == "reset"
        welcome = await comm.receive_json_from(timeout=5)
        assert welcome == {"type": "welcome", "last_event_id": newer[0]}
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_socket_delivers_an_event_whose_transaction_commits_late_once(team_a, agent_a):
    """A transaction takes an event id, then stays open past the cursor's wait while a later
    event commits: the console gets the later one first, then the late one, each once."""
    import threading

    from django.db import connection as db, transaction

    cookie = session_cookie(agent_a)
    taken = threading.Event()

    def slow_transaction():
        try:
            with transaction.atomic():
                events.emit(TICK, tick("slow"), team_id=team_a.pk)
                taken.set()
                time.sleep(4)  # longer than events.GAP_WAIT_SECONDS
        finally:
            db.close()

    async def scenario():
        comm = await connect(cookie, last_event_id=None)
        slow = threading.Thread(target=slow_transaction)
        slow.start()
        await asyncio.to_thread(taken.wait, 10)
        await database_sync_to_async(emit_many)(team_a.pk, 1, "fast")
        got = await collect_events(comm, 2, timeout=15)
        await asyncio.to_thread(slow.join, 10)
        assert sorted(str(e["n"]) for e in got) == ["0", "slow"]
        assert len({e["id"] for e in got}) == 2
        assert await nothing_more(comm, 2.5)
        await comm.disconnect()

    asyncio.run(scenario())


def test_console_cursor_watches_the_newest_ids_of_a_long_gap():
    """Thousands of ids rolled back long ago, then one still committing just below the next
    visible event: the cursor moves on after the wait and watches the ids that may still come."""
    from responses.events import GAP_WAIT_SECONDS, LATE_WATCH_MAX, Cursor

    cursor = Cursor(position=0)
    assert cursor._safe_boundary([10_000, 10_001]) == 0  # a gap seen for the first time: wait
    cursor.gaps[1] -= GAP_WAIT_SECONDS + 0.1  # ...until the wait is over
    assert cursor._safe_boundary([10_000, 10_001]) == 10_001
    late = cursor.late
    assert 9_999 in late and len(late) == LATE_WATCH_MAX and 1 not in late and not cursor.gaps


def test_console_cursor_waits_out_gaps_seen_together_once_not_one_after_another():
    """Three rolled-back transactions leave three gaps: a console that sees them at once waits
    GAP_WAIT_SECONDS once for all of them, then moves past every one and watches them."""
    from responses.events import GAP_WAIT_SECONDS, Cursor

    cursor = Cursor(position=0)
    ids = [1, 3, 4, 6, 9, 10]  # 2, 5, 7 and 8 not visible
    assert cursor._safe_boundary(ids) == 1  # up to the first gap, whose clock starts now
    assert set(cursor.gaps) == {2, 5, 7}  # every gap in sight started its clock too
    cursor.position = 1
    for start in cursor.gaps:
        cursor.gaps[start] -= GAP_WAIT_SECONDS + 0.1
    assert cursor._safe_boundary(ids[1:]) == 10  # all of them over at once
    assert {2, 5, 7, 8} <= set(cursor.late) and not cursor.gaps

    cursor = Cursor(position=0)
    cursor._safe_boundary(ids)
    cursor.gaps[2] -= GAP_WAIT_SECONDS + 0.1  # only the first gap's wait is over (say it was seen earlier)
    assert cursor._safe_boundary(ids) == 4  # past it, and held at the next one still waited on
