"""Live dashboards: a websocket that tells open dashboards to fetch their panels again, and the
receiver that rings it when messages are classified.

Protocol (JSON): server -> {"type": "refresh"} when messages of a team the user may see were
classified; server -> {"type": "bye", "reason"} then close when the user's access is gone. The
ping carries no data: the page fetches its panels over HTTP, where access is checked again, so a
ping that reaches the wrong socket could reveal nothing but its timing.

Pings are throttled per socket (THROTTLE_SECONDS): the first goes at once, the rest of a burst
is folded into one more when the interval ends. The socket itself (sign-in, access recheck,
tick) is responses.consumers.SignedInConsumer.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.dispatch import receiver

from insight import dashboards as insight
from learning.signals import messages_classified
from listening.models import Message
from responses import access
from responses.consumers import NoAccess, SignedInConsumer
from responses.events import send_to_group, user_group
from responses.models import Role, Team

THROTTLE_SECONDS = 2.0
EVERY_TEAM = "cxm.insight.all"  # admins: every connector, including those no team owns


def insight_group(team_id: int) -> str:
    return f"cxm.insight.team.{team_id}"


# --- The websocket -------------------------------------------------------------------------------


class InsightConsumer(SignedInConsumer):
    ticker_name = "insight"

    def setup(self, user) -> None:
        self.last_refresh = float("-inf")
        self.owed: asyncio.Task | None = None

    def groups_for(self, user) -> set[str]:
        """The groups the user's dashboards listen to (and their own, for rechecks)."""
        if not insight.can_view(user):
            raise NoAccess("no access to the dashboards")
        if access.role_of(user) == Role.ADMIN:
            return {EVERY_TEAM, user_group(self.user_id)}
        return {insight_group(team_id) for team_id in access.team_ids(user)} | {user_group(self.user_id)}

    async def disconnect(self, code):
        if getattr(self, "owed", None):
            self.owed.cancel()
        await super().disconnect(code)

    async def receive_json(self, content, **kwargs):
        pass  # nothing to say: the page only listens

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        pass

    # --- From the channel layer ----------------------------------------------------------------
    async def insight_refresh(self, message):
        """At most one ping per THROTTLE_SECONDS: the first at once, then one more at the end of
        the interval if anything else came in (so the last change is never left out)."""
        if self.owed is not None or self.closed:
            return
        wait = self.last_refresh + THROTTLE_SECONDS - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._refresh()
        else:
            self.owed = asyncio.ensure_future(self._refresh_later(wait))

    async def _refresh_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self.owed = None
        if not self.closed:
            await self._refresh()

    async def _refresh(self) -> None:
        self.last_refresh = asyncio.get_running_loop().time()
        await self.send_json({"type": "refresh"})

    async def console_ring(self, message):
        pass  # console events for the user: not this page's business

    async def case_presence(self, message):
        pass


# --- The notifier --------------------------------------------------------------------------------


def groups_for_messages(message_ids) -> set[str]:
    """The groups of the teams whose dashboards count these messages: the teams owning their
    connectors, the default team for a connector no team owns (routing sends it there), and the
    admins'."""
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
    for group in sorted(groups_for_messages(message_ids)):
        send_to_group(group, {"type": "insight.refresh"})
