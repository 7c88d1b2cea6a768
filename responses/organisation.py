"""How admins set up the organisation: teams (members and connectors), their queues, and the
routing rules. The API's admin area (responses.api.admin) is a thin shell over these.

Each action checks that the caller is an admin, validates what the shape check cannot (unique
names, ids that exist, a rule's conditions and actions), and answers a domain error with a reason
instead of an IntegrityError or a ProtectedError.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.text import slugify

from learning.models import Intent, IntentExample, Lane
from listening.models import Connector
from responses import access
from responses.attribute_usage import lock_read_keys, routing_rule_keys
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest
from responses.models import Queue, RoutingRule, Team
from responses.rules import validate_rule
from responses.teams import ensure_default_queues

QUEUE_LANES = ("", Lane.ISSUE, Lane.PRAISE, Lane.AMBIVALENCE, Lane.TRIAGE)
MAX_SLA_MINUTES = 60 * 24 * 30


def _one(model, pk, what: str):
    try:
        found = model.objects.filter(pk=int(pk)).first()
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise CaseNotFound(f"no such {what}")
    return found


def _slug(value: str | None, name: str) -> str:
    """The slug given (checked, never silently changed), or one made from the name."""
    if value and (slugify(value) != value or len(value) > 60):
        raise InvalidRequest("a slug is up to 60 lower-case letters, digits, '-' or '_'")
    slug = value or slugify(name)[:60]
    if not slug:
        raise InvalidRequest("the slug needs letters or digits (a-z, 0-9, '-')")
    return slug


def _saved(row, unique_reason: str):
    """Save, turning a unique-constraint race into a 409 naming what clashed."""
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise Conflict(unique_reason)
    return row


# --- Teams ------------------------------------------------------------------------------------------
def _members(ids) -> list:
    ids = sorted(set(ids))
    users = list(get_user_model().objects.filter(pk__in=ids, is_active=True)
                 .filter(access.admin_q() | Q(cxm_profile__isnull=False)).distinct())
    if len(users) != len(ids):
        raise InvalidRequest("members must be active users with a console role")
    return users


def _connectors(ids) -> list[Connector]:
    ids = sorted(set(ids))
    found = list(Connector.objects.filter(pk__in=ids))
    if len(found) != len(ids):
        raise InvalidRequest("no such connector among connectors")
    return found


def create_team(by, *, name: str, slug: str | None = None, members=(), connectors=()) -> Team:
    """A team with the default queues (care, amplify, recover, triage)."""
    access.require_admin(by)
    name = name.strip()
    if not name:
        raise InvalidRequest("name the team")
    slug = _slug(slug, name)
    if Team.objects.filter(Q(name=name) | Q(slug=slug)).exists():
        raise Conflict("a team with this name or slug exists")
    users, sources = _members(members), _connectors(connectors)
    with transaction.atomic():
        team = _saved(Team(name=name, slug=slug), "a team with this name or slug exists")
        team.members.set(users)
        team.connectors.set(sources)
        ensure_default_queues(team)
    return team


def update_team(by, team_id, **changes) -> Team:
    """Name, slug, members and connectors (each present replaces what was there)."""
    access.require_admin(by)
    team = _one(Team, team_id, "team")
    if "name" in changes:
        team.name = changes["name"].strip()
        if not team.name:
            raise InvalidRequest("name the team")
    if "slug" in changes:
        if team.slug == settings.CXM_DEFAULT_TEAM and changes["slug"] != team.slug:
            raise Conflict("the default team's slug is set by CXM_DEFAULT_TEAM; change the setting instead")
        team.slug = _slug(changes["slug"], team.name)
    if Team.objects.filter(Q(name=team.name) | Q(slug=team.slug)).exclude(pk=team.pk).exists():
        raise Conflict("a team with this name or slug exists")
    users = _members(changes["members"]) if "members" in changes else None
    sources = _connectors(changes["connectors"]) if "connectors" in changes else None
    with transaction.atomic():
        _saved(team, "a team with this name or slug exists")
        if users is not None:
            team.members.set(users)
        if sources is not None:
            team.connectors.set(sources)
    return team


def delete_team(by, team_id) -> None:
    """Only a team without cases (they would lose their owner): move or close them first."""
    access.require_admin(by)
    team = _one(Team, team_id, "team")
    if team.slug == settings.CXM_DEFAULT_TEAM:
        raise Conflict("the default team takes what no other team owns; it cannot be deleted")
    if team.cases.exists():
        raise Conflict("this team has cases; move them to another team first")
    team.delete()


# --- Queues -----------------------------------------------------------------------------------------
def _check_queue(queue: Queue) -> None:
    if queue.lane not in QUEUE_LANES:
        raise InvalidRequest(f"lane is one of: {', '.join(q or 'blank' for q in QUEUE_LANES)}")
    if queue.sla_minutes is not None and not 1 <= queue.sla_minutes <= MAX_SLA_MINUTES:
        raise InvalidRequest(f"sla_minutes is 1 to {MAX_SLA_MINUTES} (or null: no SLA)")
    if Queue.objects.filter(team_id=queue.team_id, slug=queue.slug).exclude(pk=queue.pk).exists():
        raise Conflict("this team already has a queue with this slug")


QUEUE_FIELDS = ("name", "lane", "sla_minutes", "auto_assign", "position")


def create_queue(by, *, team: int, name: str, slug: str | None = None, **fields) -> Queue:
    access.require_admin(by)
    owner = _one(Team, team, "team")
    name = name.strip()
    if not name:
        raise InvalidRequest("name the queue")
    queue = Queue(team=owner, name=name, slug=_slug(slug, name),
                  **{k: v for k, v in fields.items() if k in QUEUE_FIELDS})
    _check_queue(queue)
    return _saved(queue, "this team already has a queue with this slug")


def update_queue(by, queue_id, **changes) -> Queue:
    """Anything but its team (cases in it belong to that team)."""
    access.require_admin(by)
    queue = _one(Queue, queue_id, "queue")
    if "team" in changes and changes["team"] != queue.team_id:
        raise InvalidRequest("a queue stays in its team; make a new queue in the other team")
    for field in QUEUE_FIELDS:
        if field in changes:
            setattr(queue, field, changes[field].strip() if field == "name" else changes[field])
    if not queue.name:
        raise InvalidRequest("name the queue")
    if "slug" in changes:
        queue.slug = _slug(changes["slug"], queue.name)
    _check_queue(queue)
    return _saved(queue, "this team already has a queue with this slug")


def delete_queue(by, queue_id) -> None:
    """Its cases stay with their team, without a queue (routing puts new ones in the lane's queue)."""
    access.require_admin(by)
    _one(Queue, queue_id, "queue").delete()


# --- Routing rules ----------------------------------------------------------------------------------
RULE_FIELDS = ("name", "position", "enabled", "conditions", "actions", "stop")


def _check_rule(rule: RoutingRule) -> None:
    if not rule.name.strip():
        raise InvalidRequest("name the rule")
    try:
        validate_rule(rule.conditions, rule.actions)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(exc.messages))
    team = rule.actions.get("team")
    if team and not Team.objects.filter(slug=team).exists():
        raise InvalidRequest(f"the rule's team {str(team)[:60]!r} is no team's slug")


def create_rule(by, **fields) -> RoutingRule:
    """A rule, evaluated from the next message routed (workers read the rules per batch)."""
    access.require_admin(by)
    rule = RoutingRule(**{k: v for k, v in fields.items() if k in RULE_FIELDS})
    with transaction.atomic():
        # The attributes it tests stay locked until it is saved, as a segment's do: a deletion
        # of one waits, then sees this rule and refuses (responses.attribute_usage).
        lock_read_keys(routing_rule_keys(rule.conditions))
        _check_rule(rule)
        rule.save()
    return rule


def update_rule(by, rule_id, **changes) -> RoutingRule:
    access.require_admin(by)
    rule = _one(RoutingRule, rule_id, "rule")
    for field in RULE_FIELDS:
        if field in changes:
            setattr(rule, field, changes[field])
    with transaction.atomic():
        lock_read_keys(routing_rule_keys(rule.conditions))
        _check_rule(rule)
        rule.save()
    return rule


def delete_rule(by, rule_id) -> None:
    access.require_admin(by)
    _one(RoutingRule, rule_id, "rule").delete()


# --- Intents ----------------------------------------------------------------------------------------
# Intents are learning's; the admin check is here because learning knows no roles. Saving an
# intent or an example refits the intent head after commit (learning.receivers).
INTENT_FIELDS = ("name", "description", "lane", "priority_weight", "enabled", "counts_on_dashboards")
INTENT_LANES = ("", Lane.ISSUE, Lane.PRAISE, Lane.AMBIVALENCE, Lane.TRIAGE, Lane.NOISE, Intent.FOLLOW)


def _check_intent(intent: Intent) -> None:
    if not intent.name.strip():
        raise InvalidRequest("name the intent")
    if intent.lane not in INTENT_LANES:
        raise InvalidRequest(f"lane is one of: {', '.join(lane or 'blank' for lane in INTENT_LANES)}")
    if not -1.0 <= float(intent.priority_weight) <= 1.0:
        raise InvalidRequest("priority_weight is -1 to 1 (added to a 0-1 priority score)")


def _add_examples(intent: Intent, texts) -> None:
    texts = sorted({t.strip() for t in texts if t.strip()})
    known = set(IntentExample.objects.filter(intent=intent, text__in=texts).values_list("text", flat=True))
    IntentExample.objects.bulk_create([IntentExample(intent=intent, text=t, source=IntentExample.Source.ADMIN)
                                       for t in texts if t not in known])


def create_intent(by, *, slug: str, name: str, examples=(), **fields) -> Intent:
    """A new intent; the classifier predicts it once the head is refitted with its examples."""
    access.require_admin(by)
    intent = Intent(slug=_slug(slug, name), name=name.strip(),
                    **{k: v for k, v in fields.items() if k in INTENT_FIELDS})
    _check_intent(intent)
    if Intent.objects.filter(slug=intent.slug).exists():
        raise Conflict("an intent with this slug exists")
    with transaction.atomic():
        _saved(intent, "an intent with this slug exists")
        _add_examples(intent, examples)
    return intent


def update_intent(by, intent_id, **changes) -> Intent:
    """Anything but the slug (classifications and corrections name the intent by it); examples
    given are added to the intent's."""
    access.require_admin(by)
    intent = _one(Intent, intent_id, "intent")
    if "slug" in changes and changes["slug"] != intent.slug:
        raise InvalidRequest("an intent's slug cannot change: classifications name it; make a new intent")
    for field in INTENT_FIELDS:
        if field in changes:
            setattr(intent, field, changes[field].strip() if field == "name" else changes[field])
    _check_intent(intent)
    with transaction.atomic():
        intent.save()
        _add_examples(intent, changes.get("examples") or [])
    return intent


def delete_intent(by, intent_id) -> None:
    """Past classifications keep the slug; new messages are no longer given it after the refit."""
    access.require_admin(by)
    _one(Intent, intent_id, "intent").delete()
