"""The console's websocket: live events with catch-up, and who is viewing or typing in a case.

Protocol (JSON):
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

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db.models import Q

from responses import access
from responses.events import case_group, team_group, user_group
from responses.models import ConsoleEvent

log = logging.getLogger(__name__)

ALL_CONSOLES = "cxm.consoles"
# An id below the newest one that is not visible yet belongs to a transaction still in flight
# (sequence ids are taken before commit) or rolled back. The cursor waits this long for it, then
# moves on and keeps watching the skipped ids for LATE_WATCH_SECONDS: one that commits late is
# still delivered (in a frame marked "late"), once.
GAP_WAIT_SECONDS = 2.0
LATE_WATCH_SECONDS = 120.0
LATE_WATCH_MAX = 2000
PAGE = 500
VIEWER_TTL = 30.0
MAX_MESSAGE_CHARS = 2000


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.user_name = user.get_full_name() or user.get_username()
        self.session_key = self.scope["session"].session_key
        self.teams: set[int] = set()
        self.cursor: int | None = None
        self.gaps: dict[int, float] = {}
        self.late: dict[int, float] = {}  # skipped id -> when it was skipped
        self.viewing: set[int] = set()
        self.viewers: dict[int, dict[int, dict]] = {}  # case -> user id -> {"name", "typing", "seen"}
        self.lock = asyncio.Lock()
        self.closed = False
        self.accepted = False
        if not await self._refresh_access():
            await self.close(code=4403)
            return
        await self.accept()
        self.accepted = True
        for group in (user_group(self.user_id), ALL_CONSOLES):
            await self.channel_layer.group_add(group, self.channel_name)
        self.ticker = asyncio.ensure_future(self._tick())

    async def disconnect(self, code):
        self.closed = True
        ticker = getattr(self, "ticker", None)
        if ticker:
            ticker.cancel()
        if not hasattr(self, "user_id"):
            return
        for case_id in list(getattr(self, "viewing", ())):
            await self._announce(case_id, state="left")
            await self.channel_layer.group_discard(case_group(case_id), self.channel_name)
        for team_id in getattr(self, "teams", ()):
            await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
        for group in (user_group(self.user_id), ALL_CONSOLES):
            await self.channel_layer.group_discard(group, self.channel_name)

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
            if isinstance(last_event_id, int) and not isinstance(last_event_id, bool) and last_event_id >= 0:
                self.cursor = last_event_id
            else:  # a fresh console: live from now on
                self.cursor = await database_sync_to_async(_newest_event_id)()
            self.gaps.clear()
            self.late.clear()
        if await database_sync_to_async(_pruned_past)(self.cursor):
            # Events it missed were pruned (CXM_CONSOLE_EVENT_DAYS): catching up is impossible,
            # so the page reloads and renders the present instead.
            await self.send_json({"type": "reset", "reason": "too far behind; reload"})
            self.cursor = await database_sync_to_async(_newest_event_id)()
        await self.send_json({"type": "welcome", "last_event_id": self.cursor})
        await self._deliver()

    # --- From the channel layer ----------------------------------------------------------------
    async def console_ring(self, message):
        await self._deliver()

    async def console_recheck(self, message):
        if await self._refresh_access():
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
        if self.cursor is None or self.closed:
            return
        async with self.lock:
            if self.late:
                late = await database_sync_to_async(_late_events)(self.late, self.teams, self.user_id)
                if late:
                    await self.send_json({"type": "events", "late": True, "events": late})
            more = True
            while more and not self.closed:
                events, self.cursor, more = await database_sync_to_async(_events_after)(
                    self.cursor, self.teams, self.user_id, self.gaps, self.late)
                if events:
                    await self.send_json({"type": "events", "events": events})

    async def _tick(self):
        """Every few seconds: re-check access, pick up events whose doorbell was lost, and keep
        collision rooms fresh."""
        interval = settings.CXM_CONSOLE_POLL_SECONDS
        try:
            while not self.closed:
                await asyncio.sleep(interval)
                if not await self._refresh_access():
                    return
                await self._deliver()
                await self._refresh_rooms()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("console ticker failed")

    async def _refresh_access(self) -> bool:
        """Re-read the user's session and teams; close with a reason if access is gone."""
        teams, reason = await database_sync_to_async(_access_now)(self.user_id, self.session_key)
        if reason:
            if not self.closed and self.accepted:
                self.closed = True
                with contextlib.suppress(Exception):
                    await self.send_json({"type": "bye", "reason": reason})
                    await self.close(code=4401)
            self.closed = True
            return False
        for team_id in self.teams - teams:
            await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
        for team_id in teams - self.teams:
            await self.channel_layer.group_add(team_group(team_id), self.channel_name)
        self.teams = teams
        for case_id in list(self.viewing):
            if not await self._can_see_case(case_id):
                await self._leave(case_id)
        return True

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


# --- Database side (sync) ----------------------------------------------------------------------
def _newest_event_id() -> int:
    return ConsoleEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _pruned_past(cursor: int) -> bool:
    from responses.models import EventHorizon

    horizon = EventHorizon.objects.filter(pk=1).values_list("pruned_through", flat=True).first()
    return horizon is not None and cursor < horizon


def signed_in_user(user_id: int, session_key: str | None):
    """(the user, "") while their account is active and their session still signs them in, else
    (None, the reason a live socket must close)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not user.is_active:
        return None, "account disabled"
    if session_key is not None and not _session_authenticates(session_key, user):
        return None, "logged out"
    return user, ""


def _access_now(user_id: int, session_key: str | None) -> tuple[set[int], str]:
    """The user's teams now, or a reason their console must close."""
    user, reason = signed_in_user(user_id, session_key)
    if user is None:
        return set(), reason
    if not access.can_use_console(user):
        return set(), "no console access"
    return access.team_ids(user), ""


def _session_authenticates(session_key: str, user) -> bool:
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    stored_hash = data.get(HASH_SESSION_KEY, "")
    return bool(stored_hash) and stored_hash == user.get_session_auth_hash()


def _case_visible(case_id: int, teams: set[int]) -> bool:
    from responses.models import Case

    return Case.objects.filter(pk=case_id, team_id__in=teams).exists()


def _events_after(cursor: int, teams: set[int], user_id: int, gaps: dict[int, float],
                  late: dict[int, float]) -> tuple[list[dict], int, bool]:
    """Visible events after `cursor`, up to the first id that may still be committing; returns
    them, the new cursor, and whether more may follow at once. Ids of events for other teams
    move the cursor too."""
    ids = list(ConsoleEvent.objects.filter(id__gt=cursor).order_by("id").values_list("id", flat=True)[:PAGE])
    boundary = _safe_boundary(cursor, ids, gaps, late)
    if boundary <= cursor:
        return [], cursor, False
    rows = (ConsoleEvent.objects.filter(id__gt=cursor, id__lte=boundary)
            .filter(Q(team_id__in=teams) | Q(user_id=user_id)).order_by("id"))
    return [row.as_dict() for row in rows], boundary, len(ids) == PAGE and boundary == ids[-1]


def _safe_boundary(cursor: int, ids: list[int], gaps: dict[int, float], late: dict[int, float]) -> int:
    """The highest id up to which every id is committed or given up on (and then watched)."""
    now = time.monotonic()
    expected, boundary = cursor + 1, cursor
    for event_id in ids:
        if event_id > expected:  # ids expected..event_id-1 are not visible (yet)
            first_seen = gaps.setdefault(expected, now)
            if now - first_seen < GAP_WAIT_SECONDS:
                return boundary
            gaps.pop(expected, None)
            # Watch the newest ids of the gap: those are the transactions that may still commit
            # (a long run of old ids is what rolled-back work leaves behind).
            room = max(0, LATE_WATCH_MAX - len(late))
            for missing in range(max(expected, event_id - room), event_id):
                late[missing] = now
        boundary, expected = event_id, event_id + 1
    return boundary


def _late_events(late: dict[int, float], teams: set[int], user_id: int) -> list[dict]:
    """Skipped ids that have committed since: delivered once, then forgotten, as are ids that
    never appear (rolled back) after LATE_WATCH_SECONDS."""
    now = time.monotonic()
    for event_id in [i for i, skipped in late.items() if now - skipped > LATE_WATCH_SECONDS]:
        late.pop(event_id)
    if not late:
        return []
    rows = list(ConsoleEvent.objects.filter(id__in=list(late)).order_by("id"))
    for row in rows:
        late.pop(row.pk, None)
    return [row.as_dict() for row in rows if row.team_id in teams or row.user_id == user_id]
