"""The dashboards' websocket (/ws/insight/) through the real ASGI stack (origin check, session
auth, channel layer), rung by the real receiver of learning's `messages_classified` signal:
readers of a team hear about that team's classified messages, nobody else does, pings are
throttled per socket, and a logged-out or removed reader stops hearing."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from insight.consumers import THROTTLE_SECONDS
from learning.models import Classification
from learning.signals import messages_classified
from responses.models import Role
from tests.responses.conftest import make_user, store_message
from tests.responses.ws import communicator, nothing_more, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)
PATH = "/ws/insight/"


@pytest.fixture(autouse=True)
def fast_recheck(settings):
    settings.CXM_CONSOLE_POLL_SECONDS = 1


def classified(connector, text: str = "the app crashes") -> int:
    """Store a message and announce it classified, as a worker does on commit."""
    message = store_message(connector, text)
    messages_classified.send_robust(sender=Classification, message_ids=[message.pk], classification_ids=[])
    return message.pk


async def open_socket(cookie: str):
    comm = communicator(cookie, path=PATH)
    connected, code = await comm.connect(timeout=10)
    assert connected, f"refused with {code}"
    return comm


def check_insight_isolation(connector_a, agent_a, agent_b):
    """Used by the websocket isolation matrix too: a supervisor of team A hears team A's
    classifications; a supervisor of team B does not."""
    users = get_user_model()
    team_a, team_b = agent_a.cxm_teams.get(), agent_b.cxm_teams.get()
    reader_a = make_user(users, "insight_reader_a", Role.SUPERVISOR, [team_a])
    reader_b = make_user(users, "insight_reader_b", Role.BRAND_MANAGER, [team_b])
    cookies = session_cookie(reader_a), session_cookie(reader_b)

    async def scenario():
        mine, theirs = await open_socket(cookies[0]), await open_socket(cookies[1])
        await database_sync_to_async(classified)(connector_a, "Team A only: card charged twice")
        assert await mine.receive_json_from(timeout=5) == {"type": "refresh"}
        assert await nothing_more(theirs, 2.5)
        await mine.disconnect()
        await theirs.disconnect()

    asyncio.run(scenario())


def test_insight_socket_refuses_anonymous_agents_roleless_and_foreign_origins(agent_a, supervisor_a,
                                                                             django_user_model):
    roleless = django_user_model.objects.create_user("nobody", password="x-long-password-1")
    cookies = [session_cookie(agent_a), session_cookie(roleless)]
    reader = session_cookie(supervisor_a)

    async def scenario():
        for comm in (communicator(None, path=PATH), *(communicator(c, path=PATH) for c in cookies),
                     communicator(reader, path=PATH, origin=b"http://evil.example")):
            connected, _code = await comm.connect(timeout=10)
            assert not connected
            await comm.disconnect()

    asyncio.run(scenario())


def test_team_readers_hear_their_teams_classifications_only(connector_a, agent_a, agent_b):
    check_insight_isolation(connector_a, agent_a, agent_b)


def test_admins_hear_every_team(connector_a, connector_b, admin_user):
    cookie = session_cookie(admin_user)

    async def scenario():
        comm = await open_socket(cookie)
        await database_sync_to_async(classified)(connector_a)
        assert await comm.receive_json_from(timeout=5) == {"type": "refresh"}
        await database_sync_to_async(classified)(connector_b)  # within the interval: rung at its end
        assert await comm.receive_json_from(timeout=THROTTLE_SECONDS + 5) == {"type": "refresh"}
        await comm.disconnect()

    asyncio.run(scenario())


def test_a_burst_rings_once_at_once_and_once_more_when_the_interval_ends(connector_a, manager_a):
    cookie = session_cookie(manager_a)

    async def scenario():
        comm = await open_socket(cookie)
        started = time.monotonic()
        for n in range(5):
            await database_sync_to_async(classified)(connector_a, f"burst {n}")
        # Bounded by events, not by the clock: a leading ring held back to the interval's end would
        # be the only ring of the burst, and the second receive would find nothing.
        assert await comm.receive_json_from(timeout=30) == {"type": "refresh"}
        assert await comm.receive_json_from(timeout=THROTTLE_SECONDS + 30) == {"type": "refresh"}
        second = time.monotonic() - started
        assert second >= THROTTLE_SECONDS - 0.1, second  # the trailing ring waits out the interval
        assert await nothing_more(comm, THROTTLE_SECONDS + 1)  # the burst is over: nothing more
        await comm.disconnect()

    asyncio.run(scenario())


def test_logout_closes_the_dashboard_socket(connector_a, manager_a):
    client = Client()
    client.force_login(manager_a)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def scenario():
        comm = await open_socket(cookie)
        await database_sync_to_async(client.post)("/accounts/logout/")
        message = await comm.receive_json_from(timeout=5)
        assert message == {"type": "bye", "reason": "logged out"}
        assert (await comm.receive_output(timeout=5))["type"] == "websocket.close"

    asyncio.run(scenario())


def test_a_reader_removed_from_the_team_stops_hearing_it(connector_a, manager_a, team_a):
    cookie = session_cookie(manager_a)

    async def scenario():
        comm = await open_socket(cookie)
        await database_sync_to_async(team_a.members.remove)(manager_a)
        await asyncio.sleep(1.5)  # the recheck rung on the change (and the 1 s tick) leave the group
        await database_sync_to_async(classified)(connector_a)
        assert await nothing_more(comm, 2.5)
        await comm.disconnect()

    asyncio.run(scenario())


def test_a_connector_no_team_owns_rings_the_default_teams_dashboards(make_connector, django_user_model):
    from responses.teams import default_team

    orphan = make_connector("webhook", slug="no-team", credentials={"signing_secret": "s"})
    reader = make_user(django_user_model, "default_reader", Role.BRAND_MANAGER, [default_team()])
    cookie = session_cookie(reader)

    async def scenario():
        comm = await open_socket(cookie)
        await database_sync_to_async(classified)(orphan)
        assert await comm.receive_json_from(timeout=5) == {"type": "refresh"}
        await comm.disconnect()

    asyncio.run(scenario())
