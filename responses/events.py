"""Console events: written in the caller's transaction, announced on commit.

The ConsoleEvent row is the truth; the channel layer message is only a doorbell telling the
consoles of a team (or one user) that there is something after the id they last saw. A doorbell
that is dropped (channels_redis drops on a full group) costs nothing: the consumer also looks
for new rows every few seconds, and a reconnecting console asks from its last id.
"""

from __future__ import annotations

import logging
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from responses.models import ConsoleEvent

log = logging.getLogger(__name__)
_local = threading.local()  # doorbells owed by the current thread's transaction


def team_group(team_id: int) -> str:
    return f"cxm.team.{team_id}"


def user_group(user_id: int) -> str:
    return f"cxm.user.{user_id}"


def case_group(case_id: int) -> str:
    return f"cxm.case.{case_id}"


def emit(type: str, payload: dict, *, team_id: int | None = None, user_id: int | None = None,
         case_id: int | None = None) -> ConsoleEvent:
    """Store an event for a team's consoles (or one user's) and ring their doorbell on commit:
    once per group per transaction, however many events the transaction wrote."""
    if team_id is None and user_id is None:
        raise ValueError("an event goes to a team or to a user")
    event = ConsoleEvent.objects.create(team_id=team_id, user_id=user_id, case_id=case_id, type=type,
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
