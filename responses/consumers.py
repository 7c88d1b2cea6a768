"""The websockets' shells: a shared base that signs the user in and keeps re-checking access, and
the console's consumer on top of it (live events with catch-up, and who is viewing or typing in a
case). What they deliver is decided elsewhere: which events and from where in `responses.events`
(`Cursor`), who may see what in `responses.access`.

Console protocol (JSON):
  client -> {"type": "hello", "last_event_id": N}   then every event after N, and live from there
  client -> {"type": "view" | "leave", "case": ID}   join or leave a case's collision room
  client -> {"type": "typing", "case": ID, "typing": bool}
  server -> {"type": "events", "events": [...]}      ConsoleEvent.as_dict(), ids strictly increasing
  server -> {"type": "presence", "case": ID, "viewers": [{"id", "name", "typing"}]}
  server -> {"type": "bye", "reason": ...}           then close: logged out, deactivated, no access
  server -> {"type": "reset", ...}                   the events after N were pruned: reload the page

Events are read from the ConsoleEvent table, filtered by the user's teams as they are *now*
(re-read every few seconds and whenever the user's session or teams change), so a user removed
from a team stops receiving its events within seconds, whatever the channel layer did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model

from responses import access
from responses.events import Cursor, case_group, team_group, user_group
from responses.models import Case

log = logging.getLogger(__name__)

ALL_CONSOLES = "cxm.consoles"
VIEWER_TTL = 30.0
MAX_MESSAGE_CHARS = 2000


class NoAccess(Exception):
    """The user may not (or may no longer) hold this socket open; the message says why."""


# --- The shared base ------------------------------------------------------------------------------
class SignedInConsumer(AsyncJsonWebsocketConsumer):
    """A socket for a signed-in user that stays open only while they may hold it: access is read
    at connect, then again every CXM_CONSOLE_POLL_SECONDS and whenever a `console.recheck` rings
    the user's group (logout, deactivation, a change of role or teams). When it is gone the
    socket says {"type": "bye", "reason"} and closes.

    Subclasses say which groups the user hears (`groups_for`, run in a thread, may read the
    database; raise NoAccess to refuse) and may act after each recheck (`on_access`) and on each
    tick (`on_tick`, after the recheck)."""

    ticker_name = "socket"

    def groups_for(self, user) -> set[str]:
        raise NotImplementedError

    async def on_access(self) -> None:
        """After access was read again and the groups were joined or left."""

    async def on_tick(self) -> None:
        """Every tick, after a successful recheck."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.groups_joined: set[str] = set()
        self.closed = False
        self.accepted = False
        self.setup(user)
        groups, reason = await database_sync_to_async(self._access_now)()
        if reason:
            await self.close(code=4403)
            return
        await self.accept()
        self.accepted = True
        await self._join(groups)
        self.ticker = asyncio.ensure_future(self._tick())

    def setup(self, user) -> None:
        """Per-socket state, before access is first read."""

    async def disconnect(self, code):
        self.closed = True
        ticker = getattr(self, "ticker", None)
        if ticker:
            ticker.cancel()
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def console_recheck(self, message):
        await self.recheck()

    async def recheck(self) -> bool:
        """Read access again; join or leave groups; False (after saying bye) when it is gone."""
        if self.closed:
            return False
        groups, reason = await database_sync_to_async(self._access_now)()
        if reason:
            if not self.closed and self.accepted:
                self.closed = True
                with contextlib.suppress(Exception):
                    await self.send_json({"type": "bye", "reason": reason})
                    await self.close(code=4401)
            self.closed = True
            return False
        for group in self.groups_joined - groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined &= groups
        await self._join(groups)
        await self.on_access()
        return True

    async def _join(self, groups: set[str]) -> None:
        for group in groups - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined |= groups

    def _access_now(self) -> tuple[set[str], str]:
        user, reason = signed_in_user(self.user_id, self.session_key)
        if user is None:
            return set(), reason
        try:
            return self.groups_for(user), ""
        except NoAccess as gone:
            return set(), str(gone)

    async def _tick(self):
        try:
            while not self.closed:
                await asyncio.sleep(settings.CXM_CONSOLE_POLL_SECONDS)
                if not await self.recheck():
                    return
                await self.on_tick()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s ticker failed", self.ticker_name)


def signed_in_user(user_id: int, session_key: str | None):
    """(the user, "") while their account is active and their session still signs them in, else
    (None, the reason a live socket must close)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not user.is_active:
        return None, "account disabled"
    if session_key is not None and not _session_authenticates(session_key, user):
        return None, "logged out"
    return user, ""


def _session_authenticates(session_key: str, user) -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    stored_hash = data.get(HASH_SESSION_KEY, "")
    return bool(stored_hash) and stored_hash == user.get_session_auth_hash()


# --- The console ----------------------------------------------------------------------------------
class ConsoleConsumer(SignedInConsumer):
    ticker_name = "console"

    def setup(self, user) -> None:
        self.user_name = user.get_full_name() or user.get_username()
        self.teams: set[int] = set()
        self.cursor = Cursor()
        self.started = False
        self.viewing: set[int] = set()
        self.viewers: dict[int, dict[int, dict]] = {}  # case -> user id -> {"name", "typing", "seen"}
        self.lock = asyncio.Lock()

    def groups_for(self, user) -> set[str]:
        if not access.can_use_console(user):
            raise NoAccess("no console access")
        self.teams = access.team_ids(user)
        return {team_group(team_id) for team_id in self.teams} | {user_group(self.user_id), ALL_CONSOLES}

    async def on_access(self) -> None:
        for case_id in list(self.viewing):
            if not await self._can_see_case(case_id):
                await self._leave(case_id)

    async def on_tick(self) -> None:
        """Pick up events whose doorbell was lost, and keep collision rooms fresh."""
        await self._deliver()
        await self._refresh_rooms()

    async def disconnect(self, code):
        self.closed = True
        if hasattr(self, "user_id"):
            for case_id in list(getattr(self, "viewing", ())):
                await self._announce(case_id, state="left")
                await self.channel_layer.group_discard(case_group(case_id), self.channel_name)
        await super().disconnect(code)

    # --- From the browser ----------------------------------------------------------------------
    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            return await self._error("messages are JSON objects")
        kind = content.get("type")
        if kind == "hello":
            return await self._hello(content.get("last_event_id"))
        if kind in ("view", "leave", "typing"):
            case_id = content.get("case")
            if not isinstance(case_id, int) or isinstance(case_id, bool):
                return await self._error(f"{kind} needs a numeric case")
            if kind == "leave":
                return await self._leave(case_id)
            if not await self._can_see_case(case_id):
                return await self._error("no such case")
            if kind == "view":
                return await self._view(case_id)
            return await self._announce(case_id, state="typing" if content.get("typing") else "viewing")
        return await self._error("unknown message type")

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None or len(text_data) > MAX_MESSAGE_CHARS:
            return await self._error("messages are JSON text of at most 2000 characters")
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            return await self._error("not JSON")
        await self.receive_json(content)

    async def _error(self, reason: str):
        await self.send_json({"type": "error", "reason": reason})

    async def _hello(self, last_event_id):
        async with self.lock:
            pruned = await database_sync_to_async(self.cursor.start)(last_event_id)
            self.started = True
        if pruned:
            await self.send_json({"type": "reset", "reason": "too far behind; reload"})
        await self.send_json({"type": "welcome", "last_event_id": self.cursor.position})
        await self._deliver()

    # --- From the channel layer ----------------------------------------------------------------
    async def console_ring(self, message):
        await self._deliver()

    async def console_recheck(self, message):
        if await self.recheck():
            await self._deliver()

    async def case_presence(self, message):
        case_id, who = message["case"], message["user"]
        if case_id not in self.viewing:
            return
        room = self.viewers.setdefault(case_id, {})
        if message["state"] == "left":
            room.pop(who["id"], None)
        else:
            room[who["id"]] = {"name": who["name"], "typing": message["state"] == "typing", "seen": time.monotonic()}
        if message.get("ask") and who["id"] != self.user_id:
            await self._announce(case_id, state="viewing")  # tell the newcomer we are here
        await self._send_presence(case_id)

    # --- Delivery ------------------------------------------------------------------------------
    async def _deliver(self):
        if not self.started or self.closed:
            return
        async with self.lock:
            late = await database_sync_to_async(self.cursor.late_events)(self.teams, self.user_id)
            if late:
                await self.send_json({"type": "events", "late": True, "events": late})
            more = True
            while more and not self.closed:
                events, more = await database_sync_to_async(self.cursor.next_page)(self.teams, self.user_id)
                if events:
                    await self.send_json({"type": "events", "events": events})

    # --- Collision -----------------------------------------------------------------------------
    async def _view(self, case_id: int):
        if case_id not in self.viewing:
            self.viewing.add(case_id)
            await self.channel_layer.group_add(case_group(case_id), self.channel_name)
        await self._announce(case_id, state="viewing", ask=True)

    async def _leave(self, case_id: int):
        if case_id in self.viewing:
            await self._announce(case_id, state="left")
            self.viewing.discard(case_id)
            self.viewers.pop(case_id, None)
            await self.channel_layer.group_discard(case_group(case_id), self.channel_name)

    async def _announce(self, case_id: int, *, state: str, ask: bool = False):
        await self.channel_layer.group_send(case_group(case_id), {
            "type": "case.presence", "case": case_id, "state": state, "ask": ask,
            "user": {"id": self.user_id, "name": self.user_name},
        })

    async def _refresh_rooms(self):
        now = time.monotonic()
        for case_id in list(self.viewing):
            await self._announce(case_id, state="viewing")
            room = self.viewers.get(case_id, {})
            stale = [uid for uid, v in room.items() if now - v["seen"] > VIEWER_TTL]
            for uid in stale:
                room.pop(uid)
            if stale:
                await self._send_presence(case_id)

    async def _send_presence(self, case_id: int):
        room = self.viewers.get(case_id, {})
        viewers = [{"id": uid, "name": v["name"], "typing": v["typing"]}
                   for uid, v in sorted(room.items()) if uid != self.user_id]
        await self.send_json({"type": "presence", "case": case_id, "viewers": viewers})

    async def _can_see_case(self, case_id: int) -> bool:
        return await database_sync_to_async(_case_visible)(case_id, self.teams)


def _case_visible(case_id: int, teams: set[int]) -> bool:
    return Case.objects.filter(pk=case_id, team_id__in=teams).exists()
