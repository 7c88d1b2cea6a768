"""Teams and their default queues: Care for issues (with an SLA), Amplify for praise, Recover for
ambivalence, Triage for what the models cannot place. A connector no team owns routes to the
default team."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from listening.models import Connector
from responses.models import Queue, Team

DEFAULT_QUEUES = (
    # slug, name, lane, SLA minutes to first response
    ("care", "Care", "issue", 60),
    ("amplify", "Amplify", "praise", 240),
    ("recover", "Recover", "ambivalence", 120),
    # A message the models cannot place may be anything, a complaint included: it gets a person's
    # look within the same two hours as a customer on the fence.
    ("triage", "Triage", "triage", 120),
)


def ensure_default_queues(team: Team) -> None:
    for position, (slug, name, lane, sla) in enumerate(DEFAULT_QUEUES):
        Queue.objects.get_or_create(team=team, slug=slug,
                                    defaults={"name": name, "lane": lane, "sla_minutes": sla, "position": position})


def default_team() -> Team:
    slug = settings.CXM_DEFAULT_TEAM
    team = Team.objects.filter(slug=slug).first()
    if team is None:
        with transaction.atomic():
            team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": slug.replace("-", " ").title()})
            ensure_default_queues(team)
    return team


def team_for_connector(connector_id: int) -> Team:
    team = Team.objects.filter(connectors__id=connector_id).order_by("id").first()
    return team or default_team()


def queue_for(team: Team, lane: str, slug: str = "") -> Queue | None:
    queues = list(team.queues.all())
    if slug:
        for queue in queues:
            if queue.slug == slug:
                return queue
    for queue in queues:
        if queue.lane == lane:
            return queue
    return queues[0] if queues else None


def team_connectors(team_ids=None) -> dict[int, set[int]]:
    """Team id -> the connectors whose messages are that team's: those it owns and, for the default
    team, those no team owns (routing sends their conversations there)."""
    teams = Team.objects.all() if team_ids is None else Team.objects.filter(pk__in=list(team_ids))
    out: dict[int, set[int]] = {team.pk: set() for team in teams.only("pk")}
    for team_id, connector_id in Team.connectors.through.objects.filter(team_id__in=list(out)).values_list(
            "team_id", "connector_id"):
        out[team_id].add(connector_id)
    default = Team.objects.filter(slug=settings.CXM_DEFAULT_TEAM, pk__in=list(out)).values_list("pk", flat=True)
    for team_id in default:
        out[team_id] |= set(Connector.objects.filter(teams__isnull=True).values_list("pk", flat=True))
    return out
