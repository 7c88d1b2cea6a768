"""The websocket half of the isolation matrix: every websocket route is listed here, and for each
an agent of team B receives nothing of team A, live or by catch-up, and cannot join its rooms.
Adding a route to responses.routing_ws without adding it here fails the first test."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from insight.routing_ws import websocket_urlpatterns as insight_ws
from responses.models import ConsoleEvent
from responses.routing_ws import websocket_urlpatterns as console_ws
from tests.responses.conftest import open_case
from tests.responses.ws import collect_events, connect, nothing_more, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def check_console(connector_a, agent_a, agent_b):
    """Team A's case, message, reply and note events reach agent A; agent B gets none of them,
    neither live nor by asking for everything since event 0, and cannot view team A's case."""
    cookies = session_cookie(agent_a), session_cookie(agent_b)

    async def scenario():
        insider, outsider = await connect(cookies[0], None), await connect(cookies[1], None)
        case = await database_sync_to_async(open_case)(connector_a, "Team A only: my card was charged twice")
        from responses.cases import add_note

        await database_sync_to_async(add_note)(agent_a, case.pk, "checking with billing @agent_b")
        got = await collect_events(insider, 3, timeout=10)
        assert {e["type"] for e in got} >= {"case.created", "message.created"}
        assert await nothing_more(outsider, 2.5)
        await outsider.send_json_to({"type": "view", "case": case.pk})
        assert (await outsider.receive_json_from(timeout=5))["reason"] == "no such case"
        await outsider.disconnect()

        replay = await connect(cookies[1], 0)  # "everything since the beginning"
        assert await nothing_more(replay, 2.5)
        await replay.disconnect()
        await insider.disconnect()
        return case

    case = asyncio.run(scenario())
    assert ConsoleEvent.objects.filter(case=case).count() >= 3
    assert not ConsoleEvent.objects.filter(user=agent_b).exists()  # a mention of an outsider is not delivered


def check_insight(connector_a, agent_a, agent_b):
    """Team A's classified messages ring team A's dashboards, never team B's (the scenario lives
    with the other dashboard socket tests in tests/insight/test_live.py)."""
    from tests.insight.test_live import check_insight_isolation

    check_insight_isolation(connector_a, agent_a, agent_b)


MATRIX = {"ws-console": check_console, "ws-insight": check_insight}


def test_every_websocket_route_is_in_the_isolation_matrix():
    assert {p.name for p in [*console_ws, *insight_ws]} == set(MATRIX)


@pytest.mark.parametrize("route", sorted(MATRIX))
def test_websocket_route_isolates_teams(route, connector_a, agent_a, agent_b):
    MATRIX[route](connector_a, agent_a, agent_b)
