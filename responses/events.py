"""Console events: written in the caller's transaction, announced on commit.

The ConsoleEvent row is the truth; the channel layer message is only a doorbell telling the
consoles of a team (or one user) that there is something after the id they last saw. A doorbell
that is dropped (channels_redis drops on a full group) costs nothing: the consumer also looks
for new rows every few seconds, and a reconnecting console asks from its last id (`Cursor`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Q

from responses import event_types
from responses.event_types import Audience, EventType
from responses.models import ConsoleEvent, EventHorizon

log = logging.getLogger(__name__)
# An id below the newest one that is not visible yet belongs to a transaction still in flight
# (sequence ids are taken before commit) or rolled back. A cursor waits this long for it, then
# moves on and keeps watching the skipped ids for LATE_WATCH_SECONDS: one that commits late is
# still delivered (in a frame marked "late"), once.
GAP_WAIT_SECONDS = 2.0
LATE_WATCH_SECONDS = 120.0
LATE_WATCH_MAX = 2000
PAGE = 500
_local = threading.local()  # doorbells owed by the current thread's transaction


def team_group(team_id: int) -> str:
    return f"cxm.team.{team_id}"


def user_group(user_id: int) -> str:
    return f"cxm.user.{user_id}"


def case_group(case_id: int) -> str:
    return f"cxm.case.{case_id}"


def emit(event_type: EventType, payload: dict, *, team_id: int | None = None, user_id: int | None = None,
         case_id: int | None = None) -> ConsoleEvent:
    """Store an event for a team's consoles (or one user's) and ring their doorbell on commit:
    once per group per transaction, however many events the transaction wrote. The type must be
    declared in `responses.event_types`, with every key it declares in the payload."""
    declared = event_types.check(event_type, payload)
    if team_id is None and user_id is None:
        raise ValueError("an event goes to a team or to a user")
    if declared.audience is Audience.USER and user_id is None:
        raise ValueError(f"{declared.name} goes to one user")
    event = ConsoleEvent.objects.create(team_id=team_id, user_id=user_id, case_id=case_id, type=declared.name,
                                        payload=payload)
    group = team_group(team_id) if team_id is not None else user_group(user_id)
    pending = _pending_rings()
    pending[group] = max(pending.get(group, 0), event.pk)
    transaction.on_commit(_flush_rings)
    return event


def _pending_rings() -> dict[str, int]:
    if not hasattr(_local, "rings"):
        _local.rings = {}
    return _local.rings


def _flush_rings() -> None:
    """The first on-commit callback of a transaction rings every group it touched; the others
    find nothing left. (Entries of a rolled-back transaction ring with the next commit: harmless,
    a console only looks for rows.)"""
    pending = _pending_rings()
    if pending:
        _local.rings = {}
        ring_groups(pending)


def ring_groups(rings: dict[str, int]) -> None:
    """Tell the consoles in each group that events up to its id exist. Never raises: the change
    is committed, and consoles find the events on their next look anyway."""
    layer = get_channel_layer()
    if layer is None or not rings:
        return

    async def send_all():
        for group, event_id in rings.items():
            try:
                await layer.group_send(group, {"type": "console.ring", "id": event_id})
            except Exception:  # a full or unreachable layer must not fail the change that was made
                log.warning("could not ring %s for event %s", group, event_id, exc_info=True)

    try:
        async_to_sync(send_all)()
    except Exception:  # e.g. called from a thread that runs an event loop
        log.warning("could not ring %d groups", len(rings), exc_info=True)


def send_to_group(group: str, message: dict) -> None:
    """An ephemeral message (presence in a conversation, forced logout): best effort."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        log.warning("could not send %s to %s", message.get("type"), group, exc_info=True)


# --- Reading: one console's place in the stream ---------------------------------------------------
@dataclass
class Cursor:
    """Where one console is in the event stream, and the ids it skipped while their transactions
    were still open. Database work, so the consumer calls it through database_sync_to_async;
    one consumer's calls never overlap (it holds a lock)."""

    position: int | None = None
    gaps: dict[int, float] = field(default_factory=dict)  # first missing id -> when first seen missing
    late: dict[int, float] = field(default_factory=dict)  # skipped id -> when it was skipped

    def start(self, last_event_id) -> bool:
        """Start after `last_event_id` (a console catching up) or at the newest event (a fresh
        one, or any other value). True when the events it asks for were pruned
        (CXM_CONSOLE_EVENT_DAYS): catching up is impossible, so it starts at the newest instead
        and the page must reload to render the present."""
        valid = isinstance(last_event_id, int) and not isinstance(last_event_id, bool) and last_event_id >= 0
        self.position = last_event_id if valid else newest_event_id()
        self.gaps.clear()
        self.late.clear()
        if _pruned_past(self.position):
            self.position = newest_event_id()
            return True
        return False

    def late_events(self, teams: set[int], user_id: int) -> list[dict]:
        """Skipped ids that have committed since: delivered once, then forgotten, as are ids that
        never appear (rolled back) after LATE_WATCH_SECONDS."""
        now = time.monotonic()
        for event_id in [i for i, skipped in self.late.items() if now - skipped > LATE_WATCH_SECONDS]:
            self.late.pop(event_id)
        if not self.late:
            return []
        rows = list(ConsoleEvent.objects.filter(id__in=list(self.late)).order_by("id"))
        for row in rows:
            self.late.pop(row.pk, None)
        return [row.as_dict() for row in rows if row.team_id in teams or row.user_id == user_id]

    def next_page(self, teams: set[int], user_id: int) -> tuple[list[dict], bool]:
        """Visible events after the position, up to the first id that may still be committing;
        returns them and whether more may follow at once. Ids of events for other teams move the
        position too."""
        cursor = self.position
        if cursor is None:
            return [], False
        ids = list(ConsoleEvent.objects.filter(id__gt=cursor).order_by("id").values_list("id", flat=True)[:PAGE])
        boundary = self._safe_boundary(ids)
        if boundary <= cursor:
            return [], False
        rows = (ConsoleEvent.objects.filter(id__gt=cursor, id__lte=boundary)
                .filter(Q(team_id__in=teams) | Q(user_id=user_id)).order_by("id"))
        self.position = boundary
        return [row.as_dict() for row in rows], len(ids) == PAGE and boundary == ids[-1]

    def _safe_boundary(self, ids: list[int]) -> int:
        """The highest id up to which every id is committed or given up on (and then watched).
        Every gap in sight starts its clock when first seen, so gaps seen together are waited out
        together: waited one after another, a run of rolled-back routing transactions (each leaves
        a gap) held a console 2 s per gap, over a minute behind at 50 msgs/s."""
        now = time.monotonic()
        expected = boundary = self.position
        for stale in [start for start in self.gaps if start <= boundary]:  # filled since, passed
            del self.gaps[stale]
        expected += 1
        waiting = False
        for event_id in ids:
            if event_id > expected:  # ids expected..event_id-1 are not visible (yet)
                first_seen = self.gaps.setdefault(expected, now)
                waiting = waiting or now - first_seen < GAP_WAIT_SECONDS
                if not waiting:
                    self.gaps.pop(expected, None)
                    # Watch the newest ids of the gap: those are the transactions that may still
                    # commit (a long run of old ids is what rolled-back work leaves behind).
                    room = max(0, LATE_WATCH_MAX - len(self.late))
                    for missing in range(max(expected, event_id - room), event_id):
                        self.late[missing] = now
            if not waiting:
                boundary = event_id
            expected = event_id + 1
        return boundary


def newest_event_id() -> int:
    return ConsoleEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _pruned_past(position: int) -> bool:
    horizon = EventHorizon.objects.filter(pk=1).values_list("pruned_through", flat=True).first()
    return horizon is not None and position < horizon
