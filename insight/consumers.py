"""Live dashboards: a websocket that tells open dashboards to fetch their panels again, and the
receiver that rings it when messages are classified.

Protocol (JSON): server -> {"type": "refresh"} when messages of a team the user may see were
classified; server -> {"type": "bye", "reason"} then close when the user's access is gone. The
ping carries no data: the page fetches its panels over HTTP, where access is checked again, so a
ping that reaches the wrong socket could reveal nothing but its timing.

Pings are throttled per team (THROTTLE_SECONDS, per process): the first rings at once, the rest
of a burst is folded into one more ring when the interval ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.dispatch import receiver

from learning.signals import messages_classified
from responses import access
from responses.consumers import signed_in_user
from responses.events import send_to_group, user_group

log = logging.getLogger(__name__)

THROTTLE_SECONDS = 2.0
EVERY_TEAM = "cxm.insight.all"  # admins: every connector, including those no team owns


def insight_group(team_id: int) -> str:
    return f"cxm.insight.team.{team_id}"


# --- The websocket -------------------------------------------------------------------------------


class InsightConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.groups_joined: set[str] = set()
        self.closed = False
        groups, reason = await database_sync_to_async(_insight_access)(self.user_id, self.session_key)
        if reason:
            await self.close(code=4403)
            return
        await self.accept()
        await self._join(groups | {user_group(self.user_id)})
        self.ticker = asyncio.ensure_future(self._tick())

    async def disconnect(self, code):
        self.closed = True
        ticker = getattr(self, "ticker", None)
        if ticker:
            ticker.cancel()
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # nothing to say: the page only listens

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        pass

    # --- From the channel layer ----------------------------------------------------------------
    async def insight_refresh(self, message):
        await self.send_json({"type": "refresh"})

    async def console_recheck(self, message):
        """Rung to the user's group on logout, deactivation, or a change of role or teams."""
        await self._recheck()

    async def console_ring(self, message):
        pass  # console events for the user: not this page's business

    async def case_presence(self, message):
        pass

    # --- Access --------------------------------------------------------------------------------
    async def _tick(self):
        """Re-check the session and teams every few seconds, as the console does."""
        try:
            while not self.closed:
                await asyncio.sleep(settings.CXM_CONSOLE_POLL_SECONDS)
                await self._recheck()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("insight ticker failed")

    async def _recheck(self):
        if self.closed:
            return
        groups, reason = await database_sync_to_async(_insight_access)(self.user_id, self.session_key)
        if reason:
            self.closed = True
            await self.send_json({"type": "bye", "reason": reason})
            await self.close(code=4401)
            return
        wanted = groups | {user_group(self.user_id)}
        for group in self.groups_joined - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined &= wanted
        await self._join(wanted)

    async def _join(self, groups: set[str]):
        for group in groups - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined |= groups


def _insight_access(user_id: int, session_key: str | None) -> tuple[set[str], str]:
    """The groups the user's dashboards listen to, or a reason to close."""
    from insight import dashboards as insight
    from responses.models import Role

    user, reason = signed_in_user(user_id, session_key)
    if user is None:
        return set(), reason
    if not insight.can_view(user):
        return set(), "no access to the dashboards"
    if access.role_of(user) == Role.ADMIN:
        return {EVERY_TEAM}, ""
    return {insight_group(team_id) for team_id in access.team_ids(user)}, ""


# --- The notifier --------------------------------------------------------------------------------


class Throttle:
    """At most one ring per group per `interval` seconds: the first at once, then one more at
    the end of the interval if anything else came in (so the last change is never left out)."""

    def __init__(self, interval: float = THROTTLE_SECONDS) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.owed: dict[str, threading.Timer] = {}

    def ring(self, groups) -> None:
        now = time.monotonic()
        due, later = [], []
        where: dict = {}  # the loop to send owed rings on, found once the lock is released
        with self.lock:
            for group in groups:
                if now - self.last.get(group, float("-inf")) >= self.interval:
                    self.last[group] = now
                    due.append(group)
                elif group not in self.owed:
                    timer = threading.Timer(self.last[group] + self.interval - now, self._owed, args=(group, where))
                    timer.daemon = True
                    self.owed[group] = timer
                    later.append(timer)
        for group in due:
            _send_refresh(group)
        if later:
            where["loop"] = _outer_loop()
            for timer in later:
                timer.start()

    def _owed(self, group: str, where: dict) -> None:
        with self.lock:
            if self.owed.pop(group, None) is None:
                return  # reset() called it off
            self.last[group] = time.monotonic()
        loop = where.get("loop")
        if loop is not None and loop.is_running():
            # The web process's own loop (a trial: eager tasks, in-memory layer): the in-memory
            # layer's queues belong to it, so the send must run there, not on a new loop.
            asyncio.run_coroutine_threadsafe(_group_send(group), loop)
        else:
            _send_refresh(group)

    def reset(self) -> None:
        """Forget every interval and call off the rings still owed (tests start afresh)."""
        with self.lock:
            for timer in self.owed.values():
                timer.cancel()
            self.last.clear()
            self.owed.clear()


def _outer_loop():
    """The event loop this sync code runs under (an ASGI server's), or None: in a worker each
    async_to_sync gets a loop of its own that is gone by the time a timer fires."""

    async def running():
        return asyncio.get_running_loop()

    try:
        return async_to_sync(running)()
    except RuntimeError:  # called from async code: no outer loop to borrow
        return None


async def _group_send(group: str) -> None:
    try:
        await get_channel_layer().group_send(group, {"type": "insight.refresh"})
    except Exception:
        log.warning("could not ring %s", group, exc_info=True)


def _send_refresh(group: str) -> None:
    send_to_group(group, {"type": "insight.refresh"})


throttle = Throttle()


def groups_for_messages(message_ids) -> set[str]:
    """The groups of the teams whose dashboards count these messages: the teams owning their
    connectors, the default team for a connector no team owns (routing sends it there), and the
    admins'."""
    from listening.models import Message
    from responses.models import Team

    connectors = set(Message.objects.filter(pk__in=list(message_ids)).values_list("connector_id", flat=True))
    if not connectors:
        return set()
    owned = set(Team.connectors.through.objects.filter(connector_id__in=connectors)
                .values_list("connector_id", "team_id"))
    teams = {team_id for _, team_id in owned}
    if connectors - {connector_id for connector_id, _ in owned}:
        teams |= set(Team.objects.filter(slug=settings.CXM_DEFAULT_TEAM).values_list("pk", flat=True))
    return {insight_group(team_id) for team_id in teams} | {EVERY_TEAM}


@receiver(messages_classified, dispatch_uid="insight.refresh")
def refresh_dashboards(sender, message_ids, **kwargs):
    """Sent on commit by the classifying worker (or the web process in a trial): tell the open
    dashboards of the teams concerned to fetch their panels again."""
    groups = groups_for_messages(message_ids)
    if groups:
        throttle.ring(sorted(groups))
