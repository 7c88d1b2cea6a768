"""Macros: several case actions applied with one click.

A macro is a list of steps, each a dict with a "type":
  {"type": "reply", "text": "Hi {customer.first_name}, ..."}  sent through the normal reply path
  {"type": "add_tags", "tags": ["refund"]} / {"type": "remove_tags", "tags": ["new"]}
  {"type": "status", "value": "pending"}
  {"type": "assign", "user": 12 | "me" | "none"}
  {"type": "priority", "value": 0.8}
Supervisors make them for their teams (admins also for every team); anyone who may reply
applies them. A step that names something gone (a user deleted, deactivated or no longer on
the team; a tag the tag rules now refuse) makes the macro refuse to run, with the reason, and
the macro list flags it, so that a half-applied macro never surprises an agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet

from responses import access, assignment, cases, event_types, events, replies
from responses.exceptions import CaseNotFound, InvalidRequest, NotAllowed
from responses.models import Case, CaseStatus, Macro, Reply, Role, Team
from responses.snooze import activity_dict, record_activity
from responses.summaries import case_summary, user_dict

STEP_TYPES = {"reply": "Reply", "add_tags": "Add tags", "remove_tags": "Remove tags", "status": "Set status",
              "assign": "Assign", "priority": "Set priority"}
MAX_STEPS = 20
MAX_TITLE = 120
# {customer.first_name} in macros; canned responses spell the same values {customer_first_name}.
DOTTED = {"{customer.name}": "{customer_name}", "{customer.first_name}": "{customer_first_name}",
          "{agent.name}": "{agent_name}", "{agent.first_name}": "{agent_first_name}"}
PLACEHOLDERS = ("{customer.first_name}", "{customer.name}", "{agent.first_name}", "{agent.name}", "{brand}")


@dataclass(frozen=True)
class Applied:
    case: Case
    reply: Reply | None
    already: bool  # the same idempotency key was applied before: nothing ran twice


# --- Validation -------------------------------------------------------------------------------


def clean_steps(raw) -> list[dict]:
    """The macro's steps in canonical form, or InvalidRequest naming the first bad one."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("a macro needs at least one action")
    if len(raw) > MAX_STEPS:
        raise InvalidRequest(f"a macro has at most {MAX_STEPS} actions")
    steps = [_clean_step(step, n) for n, step in enumerate(raw, 1)]
    if sum(1 for s in steps if s["type"] == "reply") > 1:
        raise InvalidRequest("a macro sends at most one reply")
    return steps


def _clean_step(step, n: int) -> dict:
    if not isinstance(step, dict) or step.get("type") not in STEP_TYPES:
        raise InvalidRequest(f"action {n}: type must be one of {', '.join(STEP_TYPES)}")
    kind = step["type"]
    if kind == "reply":
        text = step.get("text")
        if not isinstance(text, str) or not text.replace("\x00", "").strip():
            raise InvalidRequest(f"action {n}: the reply text is empty")
        if len(text) > replies.MAX_REPLY_CHARS:
            raise InvalidRequest(f"action {n}: the reply is {len(text)} characters; at most {replies.MAX_REPLY_CHARS}")
        return {"type": kind, "text": text.replace("\x00", "").strip()}
    if kind in ("add_tags", "remove_tags"):
        tags = step.get("tags")
        if not isinstance(tags, str | list):
            raise InvalidRequest(f"action {n}: tags must be text or a list")
        cleaned = cases._clean_tags(tags)
        if not cleaned:
            raise InvalidRequest(f"action {n}: name at least one tag")
        return {"type": kind, "tags": cleaned}
    if kind == "status":
        value = step.get("value")
        if value not in CaseStatus.values:
            raise InvalidRequest(f"action {n}: status must be one of {', '.join(CaseStatus.values)}")
        return {"type": kind, "value": value}
    if kind == "assign":
        value = step.get("user")
        if value in ("me", "none"):
            return {"type": kind, "user": value}
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidRequest(f"action {n}: assign to a user id, \"me\" or \"none\"")
        return {"type": kind, "user": value}
    value = step.get("value")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"action {n}: priority must be a number from 0 to 1")
    if not 0.0 <= value <= 1.0:
        raise InvalidRequest(f"action {n}: priority must be a number from 0 to 1")
    return {"type": kind, "value": round(value, 3)}


def problems(macro: Macro, team: Team | None = None) -> list[str]:
    """What in the macro points at something that is gone, in words (empty: it can run). `team`:
    the case's team (a global macro is checked against it when applied)."""
    try:
        steps = clean_steps(macro.actions)
    except InvalidRequest as exc:
        return [exc.reason]
    team = team or macro.team
    found = []
    users = {s["user"] for s in steps if s["type"] == "assign" and isinstance(s["user"], int)}
    known = {u.pk: u for u in get_user_model().objects.filter(pk__in=users)} if users else {}
    for user_id in sorted(users):
        user = known.get(user_id)
        if user is None:
            found.append(f"assigns to a user who was deleted (#{user_id})")
        elif not user.is_active:
            found.append(f"assigns to {_name(user)}, whose account is switched off")
        elif team is not None and not assignment.can_hold_cases(user, team.pk):
            found.append(f"assigns to {_name(user)}, who is no longer an agent of {team.name}")
    return found


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


# --- Who sees and changes macros (as canned responses) -------------------------------------------


def visible(user) -> QuerySet[Macro]:
    return Macro.objects.filter(Q(team_id__in=access.team_ids(user)) | Q(team__isnull=True))


def get_macro(user, macro_id: int) -> Macro:
    macro = visible(user).filter(pk=macro_id).first()
    if macro is None:
        raise CaseNotFound("no such macro")
    return macro


def may_change(user, macro: Macro) -> bool:
    """A global macro is the admins'; a team's, its supervisors' (visible means theirs)."""
    role = access.role_of(user)
    return role == Role.ADMIN or (role == Role.SUPERVISOR and macro.team_id is not None)


def save_macro(user, macro: Macro, *, title: str, team_id: int | None, actions) -> Macro:
    """Create or change a macro (supervisors of its team; admins for all teams)."""
    access.require_supervisor(user)
    if macro.pk and not may_change(user, macro):
        raise NotAllowed("only admins change macros for all teams")
    title = (title or "").replace("\x00", "").strip()
    if not title:
        raise InvalidRequest("title is required")
    if len(title) > MAX_TITLE:
        raise InvalidRequest(f"title is at most {MAX_TITLE} characters")
    if team_id is None:
        if access.role_of(user) != Role.ADMIN:
            raise InvalidRequest("choose one of your teams: only admins make macros for all teams")
        team = None
    else:
        team = Team.objects.filter(pk=team_id, pk__in=access.team_ids(user)).first()
        if team is None:
            raise InvalidRequest("choose one of your teams")
    macro.title, macro.team, macro.actions = title, team, clean_steps(actions)
    found = problems(macro)
    if found:
        raise InvalidRequest(f"this macro {found[0]}")
    if not macro.pk:
        macro.created_by = user
    macro.save()
    return macro


def delete_macro(user, macro: Macro) -> None:
    access.require_supervisor(user)
    if not may_change(user, macro):
        raise NotAllowed("only admins delete macros for all teams")
    macro.delete()


# --- Applying -------------------------------------------------------------------------------


def render(text: str, case: Case, agent) -> str:
    for dotted, plain in DOTTED.items():
        text = text.replace(dotted, plain)
    return replies.render_canned(text, case, agent)


def apply_macro(user, case_id, macro_id: int, *, idempotency_key: str = "") -> Applied:
    """Run every step of a macro on a case, all or nothing. The reply goes through the normal
    reply path; the same idempotency key applies the macro once (a double click, a retry)."""
    access.require_reply(user)
    case = access.get_case(user, case_id)
    macro = get_macro(user, macro_id)
    if macro.team_id is not None and macro.team_id != case.team_id:
        raise InvalidRequest(f"this macro is for {macro.team.name}, and this case belongs to {case.team.name}")
    found = problems(macro, case.team)
    if found:
        raise InvalidRequest(f"“{macro.title}” {found[0]}: ask a supervisor to fix the macro")
    steps = clean_steps(macro.actions)
    key = replies._key(idempotency_key)
    reply_key = f"macro-{macro.pk}-{key}"[:80]
    with transaction.atomic():
        case = access.get_case(user, case.pk, for_update=True)
        done = case.activities.filter(kind="macro", detail__key=key).exists()
        if done:
            return Applied(case, Reply.objects.filter(idempotency_key=reply_key).first(), True)
        if not case.is_active and any(s["type"] != "status" for s in steps):
            raise InvalidRequest(f"this case is {case.get_status_display().lower()}: reopen it first")
        reply = _run(user, case, macro, steps, reply_key)
        case.refresh_from_db()
        activity = record_activity(case, "macro", f"Macro “{macro.title}” applied", user,
                                   {"macro": macro.pk, "key": key, "steps": [s["type"] for s in steps]})
        events.emit(event_types.CASE_UPDATED, {"case": case_summary(case), "by": user_dict(user),
                                     "activity": activity_dict(activity)}, team_id=case.team_id, case_id=case.pk)
    return Applied(case, reply, False)


def _run(user, case: Case, macro: Macro, steps: list[dict], reply_key: str) -> Reply | None:
    status = next((s["value"] for s in steps if s["type"] == "status"), None)
    closing = status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)
    reply = None
    for step in steps:
        kind = step["type"]
        if kind in ("add_tags", "remove_tags"):
            current = Case.objects.get(pk=case.pk).tags
            tags = ({*current, *step["tags"]} if kind == "add_tags" else set(current) - set(step["tags"]))
            cases.set_tags(user, case.pk, sorted(tags))
        elif kind == "assign":
            _assign(user, case, step["user"])
        elif kind == "priority":
            Case.objects.filter(pk=case.pk).update(priority=step["value"])
    for step in steps:
        if step["type"] == "reply":
            # A macro that resolves and replies resolves once the reply is out, as Send & resolve does.
            reply = replies.send_reply(user, case.pk, render(step["text"], case, user), idempotency_key=reply_key,
                                       resolve=closing)
    if status is not None and not (closing and reply is not None):
        cases.set_status(user, case.pk, status)
    return reply


def _assign(user, case: Case, target) -> None:
    """The macro's supervisor chose the assignee, so an agent applying it may give the case to
    someone else; the target must still hold cases on this team (problems() checked)."""
    if target == "me":
        assignee = user
    elif target == "none":
        assignee = None
    else:
        assignee = get_user_model().objects.get(pk=target)
    fresh = Case.objects.select_for_update().get(pk=case.pk)
    if assignee is not None and not assignment.can_hold_cases(assignee, fresh.team_id):
        raise InvalidRequest(f"{_name(assignee)} cannot hold cases of this team")
    assignment._assign(fresh, assignee, user)
