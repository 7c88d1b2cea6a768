"""Rules over signals: their validation and their incremental evaluation.

Each enabled SignalRule keeps a SignalRuleState per key (a customer, or a device) in the
database, updated as signals arrive, so a rule never recounts the signal table:

- count: the state holds the key's signals within two windows of its newest (fewer than 2N while
  it has not fired). A signal at t counts those in (max(t - window, fired_until), t]; at N the
  rule fires, and the key is silenced until t + window, so one burst fires once and a later burst
  counts afresh. Signals may be evaluated out of time order (concurrent workers, late devices): a
  late one is also counted in the windows of the newer signals kept, and the earliest window that
  reaches N fires. A retried batch finds its signal ids in the state and adds nothing twice.
- followed_by_negative: the state holds the last matching signal; a negative message from the
  customer within the window fires once for that signal (evaluate_messages).
- absence: the state holds the last matching signal; beat (check_absence) fires once per silence.

A batch is evaluated in one transaction per rule: the states of its keys are locked in key order,
changed in memory, written back in one bulk update, and the firings (responses.signal_cases)
commit with them: a worker killed mid-batch leaves either all of it or none.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from listening.connectors.templates import NAME_RE as TEMPLATE_NAME_RE
from listening.models import Signal
from listening.signal_types import SIGNAL_TYPES
from responses.cases import TAG_RE
from responses.models import SignalRule, SignalRuleFiring, SignalRuleState

log = logging.getLogger(__name__)

MAX_THRESHOLD = 1000
MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_FOLLOW_MINUTES = 24 * 60
MAX_ABSENCE_DAYS = 365
ACTIONS = ("open_case", "priority", "tag", "alert", "proactive")
MAX_PROACTIVE_VALUES = 10


# --- Validation -------------------------------------------------------------------------------------
def validate_signal_rule(rule: SignalRule) -> None:
    """Raise ValidationError naming what is wrong. A rule must name a known signal type, a real
    threshold and window, and at least one action: nothing fires on every event unasked."""
    errors: dict[str, str] = {}
    if not (rule.name or "").strip():
        errors["name"] = "Give the rule a name."
    if rule.kind not in SignalRule.Kind.values:
        errors["kind"] = f"Choose one of: {', '.join(SignalRule.Kind.labels)}."
    if rule.per not in SignalRule.Per.values:
        errors["per"] = "Count per customer or per device."
    if rule.signal_type not in SIGNAL_TYPES:
        errors["signal_type"] = "Choose the kind of signal the rule watches; a rule over every signal is refused."
    if rule.kind == SignalRule.Kind.COUNT:
        if not 1 <= (rule.threshold or 0) <= MAX_THRESHOLD:
            errors["threshold"] = f"How many signals: 1 to {MAX_THRESHOLD}."
        if not 1 <= (rule.window_minutes or 0) <= MAX_WINDOW_MINUTES:
            errors["window_minutes"] = f"The window is 1 minute to {MAX_WINDOW_MINUTES // 1440} days."
    elif rule.kind == SignalRule.Kind.FOLLOWED_BY_NEGATIVE:
        if rule.per != SignalRule.Per.CUSTOMER:
            errors["per"] = "Messages come from customers, not devices: count this per customer."
        if not 1 <= (rule.window_minutes or 0) <= MAX_FOLLOW_MINUTES:
            errors["window_minutes"] = f"The message must follow within 1 minute to {MAX_FOLLOW_MINUTES // 60} hours."
    elif rule.kind == SignalRule.Kind.ABSENCE and not 1 <= (rule.absence_days or 0) <= MAX_ABSENCE_DAYS:
        errors["absence_days"] = f"Days without a signal: 1 to {MAX_ABSENCE_DAYS}."
    problem = _actions_problem(rule.actions)
    if problem:
        errors["actions"] = problem
    if errors:
        raise ValidationError(errors)


def _actions_problem(actions: Any) -> str:
    if not isinstance(actions, dict) or set(actions) - set(ACTIONS):
        return f"Actions are {', '.join(ACTIONS)}."
    if "open_case" in actions and not isinstance(actions["open_case"], bool):
        return "open_case is true or false."
    if "alert" in actions and not isinstance(actions["alert"], bool):
        return "alert is true or false."
    priority = actions.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | float)
                                 or not 0 <= priority <= 1):
        return "Priority is a number from 0 to 1."
    tag = actions.get("tag")
    if tag not in (None, "") and not (isinstance(tag, str) and TAG_RE.match(tag)):
        return "The tag is up to 40 letters, digits, spaces, '.', ':' or '-'."
    problem = _proactive_problem(actions)
    if problem:
        return problem
    if not (actions.get("open_case") or actions.get("alert") or tag or priority is not None):
        return "Choose at least one action: open a case, raise priority, tag the customer or alert the team."
    return ""


def _proactive_problem(actions: dict) -> str:
    """{"template": "<approved template name>", "values": ["{customer_first_name}", ...]}: sent on
    the case the rule opens, so it needs open_case (the template itself is checked on sending,
    against the connector the case lands on)."""
    spec = actions.get("proactive")
    if spec is None:
        return ""
    if not isinstance(spec, dict) or set(spec) - {"template", "values"}:
        return 'A proactive message is {"template": name, "values": [...]}.'
    template, values = spec.get("template"), spec.get("values", [])
    if not isinstance(template, str) or not TEMPLATE_NAME_RE.fullmatch(template):
        return "Name the approved template: lower-case letters, digits and underscores."
    if (not isinstance(values, list) or len(values) > MAX_PROACTIVE_VALUES
            or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values)):
        return f"The template's values are up to {MAX_PROACTIVE_VALUES} texts of 1 to 200 characters."
    if not actions.get("open_case"):
        return "A proactive message is sent on the case the rule opens: choose \"open a case\" too."
    return ""


def describe(rule: SignalRule) -> str:
    """The rule in words, for the console's list."""
    kind = SIGNAL_TYPES.get(rule.signal_type)
    label = kind.label.lower() if kind else "(no signal chosen)"
    who = "one device" if rule.per == SignalRule.Per.DEVICE else "one customer"
    if rule.kind == SignalRule.Kind.COUNT:
        when = f"{rule.threshold} × {label} for {who} within {_minutes(max(rule.window_minutes, 1))}"
    elif rule.kind == SignalRule.Kind.FOLLOWED_BY_NEGATIVE:
        when = f"a {label}, then an unhappy message within {_minutes(max(rule.window_minutes, 1))}"
    else:
        when = f"no {label} for {rule.absence_days} day{'s' if rule.absence_days != 1 else ''}"
    actions = rule.actions or {}
    did = []
    if actions.get("open_case"):
        did.append("open a proactive case" + (f" at priority {actions['priority']:g}" if "priority" in actions else ""))
    elif actions.get("priority") is not None:
        did.append(f"raise the open case to priority {actions['priority']:g}")
    if actions.get("tag"):
        did.append(f"tag the customer “{actions['tag']}”")
    if actions.get("alert"):
        did.append("alert the team")
    if actions.get("proactive"):
        did.append(f"send the template “{actions['proactive'].get('template', '')}”")
    return f"When {when}: {', '.join(did) or 'nothing'}."


# --- Evaluation ---------------------------------------------------------------------------------------
@dataclass
class _Fire:
    state: SignalRuleState
    signal_ids: list[int]
    at: datetime
    reason: str


def key_for(rule: SignalRule, customer_id: int, device_id: str) -> str:
    return f"d:{device_id}" if rule.per == SignalRule.Per.DEVICE else f"c:{customer_id}"


def evaluate_signals(signal_ids) -> list[int]:
    """Update every enabled rule's state with these stored signals; fire where a rule is met.
    Returns the ids of the firings."""
    rows = _signal_rows(list(signal_ids))
    if not rows:
        return []
    rules = list(SignalRule.objects.filter(enabled=True, signal_type__in={r["type"] for r in rows})
                 .select_related("team"))
    fired: list[int] = []
    for rule in rules:
        wanted = [r for r in rows if r["type"] == rule.signal_type
                  and (rule.per == SignalRule.Per.CUSTOMER or r["device_id"])]
        if wanted:
            fired.extend(_evaluate_rule(rule, wanted))
    return fired


SIGNAL_FIELDS = ("id", "type", "customer_id", "device_id", "occurred_at")


def _signal_rows(ids: list[int]) -> list[dict]:
    """The signals in time order. PostgreSQL: one statement whose text does not change with the
    batch's size (psycopg converts a new text again, and Django compiles the query each time)."""
    if connection.vendor != "postgresql":
        return [dict(zip(SIGNAL_FIELDS, row, strict=True)) for row in Signal.objects.filter(pk__in=ids)
                .order_by("occurred_at", "id").values_list(*SIGNAL_FIELDS)]
    table = connection.ops.quote_name(Signal._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(SIGNAL_FIELDS)} FROM {table} WHERE id = ANY(%s::bigint[]) "  # noqa: S608
                       "ORDER BY occurred_at, id", [ids])
        return [dict(zip(SIGNAL_FIELDS, row, strict=True)) for row in cursor.fetchall()]


def _evaluate_rule(rule: SignalRule, rows: list[dict]) -> list[int]:
    from responses.signal_cases import FireContext, fire

    with transaction.atomic():
        by_key: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            by_key[key_for(rule, row["customer_id"], row["device_id"])].append(row)
        states = _lock_states(rule, {key: group[-1]["customer_id"] for key, group in by_key.items()})
        fires: list[_Fire] = []
        for key in sorted(by_key):
            state = states[key]
            for row in by_key[key]:
                outcome = _step(rule, state, row)
                if outcome:
                    fires.append(outcome)
        _write_states([states[key] for key in sorted(by_key)])
        if not fires:
            return []
        context = FireContext.read(rule, [f.state.customer_id for f in fires])
        return [fire(rule, f.state, f.signal_ids, f.reason, f.at, context=context).pk for f in fires]


def _lock_states(rule: SignalRule, customers: dict[str, int]) -> dict[str, SignalRuleState]:
    """The states of these keys, created if missing and locked (existing ones in key order)."""
    keys = sorted(customers)
    if connection.vendor == "postgresql":
        return _lock_states_pg(rule, keys, customers)
    found = _select_locked(rule, keys)
    missing = [key for key in keys if key not in found]
    if missing:
        SignalRuleState.objects.bulk_create(
            [SignalRuleState(rule=rule, key=key, customer_id=customers[key]) for key in missing],
            ignore_conflicts=True)
        found = _select_locked(rule, keys)
    return found


STATE_COLUMNS = ("id", "key", "customer_id", "recent", "last_at", "last_signal_id", "fired_until", "fired_at")


def _lock_states_pg(rule: SignalRule, keys: list[str], customers: dict[str, int]) -> dict[str, SignalRuleState]:
    """One SELECT ... FOR UPDATE when every key has its state (the steady state), plus one INSERT
    ... ON CONFLICT DO NOTHING RETURNING for new keys (the rows it returns are ours, hence locked);
    only a key a concurrent batch created meanwhile takes a third statement. Rows become model
    instances without the ORM's query building (it was a third of a batch's evaluation)."""
    table = connection.ops.quote_name(SignalRuleState._meta.db_table)
    columns = ", ".join(STATE_COLUMNS)
    select = (f"SELECT {columns} FROM {table} WHERE rule_id = %s AND key = ANY(%s::text[]) "  # noqa: S608
              "ORDER BY key FOR UPDATE")
    found: dict[str, SignalRuleState] = {}
    with connection.cursor() as cursor:
        cursor.execute(select, [rule.pk, keys])
        _states_from(cursor.fetchall(), rule, found)
        missing = [key for key in keys if key not in found]
        if missing:
            cursor.execute(
                f"INSERT INTO {table} (rule_id, key, customer_id, recent) "  # noqa: S608
                "SELECT %s, v.key, v.customer, '[]'::jsonb FROM unnest(%s::text[], %s::bigint[]) AS v(key, customer) "
                f"ORDER BY v.key ON CONFLICT (rule_id, key) DO NOTHING RETURNING {columns}",
                [rule.pk, missing, [customers[key] for key in missing]])
            _states_from(cursor.fetchall(), rule, found)
            raced = [key for key in missing if key not in found]
            if raced:
                cursor.execute(select, [rule.pk, raced])
                _states_from(cursor.fetchall(), rule, found)
    return found


def _states_from(rows, rule: SignalRule, into: dict[str, SignalRuleState]) -> None:
    # Positional values in the model's field order: Django's fast path (keyword arguments and
    # the rule object made building the states most of locking them).
    for pk, key, customer_id, recent, last_at, last_signal_id, fired_until, fired_at in rows:
        recent = json.loads(recent) if isinstance(recent, str) else recent
        state = SignalRuleState(pk, rule.pk, key, customer_id, recent, last_at, last_signal_id, fired_until, fired_at)
        state._state.adding, state._state.db = False, connection.alias
        state._state.fields_cache["rule"] = rule
        into[key] = state


def _write_states(states: list[SignalRuleState]) -> None:
    """One UPDATE for the batch's states (FROM unnest(arrays) on PostgreSQL, FROM (VALUES ...)
    elsewhere): Django's bulk_update builds a CASE per field and row, which took most of a batch's
    time (bench/signals.py)."""
    if not states:
        return
    quote, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
    table = quote(SignalRuleState._meta.db_table)
    if connection.vendor == "postgresql":
        # Arrays, one per column: the same text whatever the batch's size. A VALUES row per state
        # made a new text each time, which psycopg parsed again (a quarter of the write's time).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET recent = v.recent, last_at = v.last_at, last_signal_id = v.last_signal_id, "  # noqa: S608
                "fired_until = v.fired_until, fired_at = v.fired_at FROM unnest(%s::bigint[], %s::jsonb[], "
                "%s::timestamptz[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) "
                f"AS v(id, recent, last_at, last_signal_id, fired_until, fired_at) WHERE {table}.id = v.id",
                [[s.pk for s in states], [json.dumps(s.recent) for s in states], [s.last_at for s in states],
                 [s.last_signal_id for s in states], [s.fired_until for s in states], [s.fired_at for s in states]])
        return
    row = "(%s, %s, %s, %s, %s, %s)"
    # Identifiers come from model metadata; values are parameters.
    sql = (f"UPDATE {table} SET recent = v.column2, last_at = v.column3, last_signal_id = v.column4, "  # noqa: S608
           f"fired_until = v.column5, fired_at = v.column6 FROM (VALUES {', '.join([row] * len(states))}) AS v "
           f"WHERE {table}.id = v.column1")
    params = [value for state in states for value in (
        state.pk, json.dumps(state.recent), adapt(state.last_at), state.last_signal_id, adapt(state.fired_until),
        adapt(state.fired_at))]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _select_locked(rule: SignalRule, keys: list[str]) -> dict[str, SignalRuleState]:
    states: dict[str, SignalRuleState] = {}
    for start in range(0, len(keys), 500):
        for state in SignalRuleState.objects.select_for_update().filter(
                rule=rule, key__in=keys[start:start + 500]).order_by("key"):
            states[state.key] = state
    return states


def _step(rule: SignalRule, state: SignalRuleState, row: dict) -> _Fire | None:
    at: datetime = row["occurred_at"]
    if state.last_at is None or at >= state.last_at:
        state.last_at, state.last_signal_id = at, row["id"]
    if rule.kind != SignalRule.Kind.COUNT:
        return None  # the other kinds fire on a message or on the clock, from the state kept here
    if any(signal_id == row["id"] for _, signal_id in state.recent):
        return None  # a retried batch: already counted
    t = at.timestamp()
    silenced_until = state.fired_until.timestamp() if state.fired_until else None
    if silenced_until is not None and t <= silenced_until:
        return None  # part of the burst that already fired
    window = rule.window_minutes * 60
    recent = sorted([*state.recent, [t, row["id"]]])
    # Signals of one key are not evaluated in time order: concurrent workers take the deliveries
    # of one burst in any order, and a device may send late. So the state keeps every signal
    # within two windows of the newest (a signal up to one window late still finds all of its
    # own window), and a signal is counted in its own window and in the windows of the newer
    # signals already kept; the earliest window that reaches N fires. Kept at the newest
    # `threshold` entries, a late signal found its older neighbours dropped and a burst never
    # fired (bench/signals.py against the deployment: 196 of 200).
    newest = recent[-1][0]
    recent = [entry for entry in recent if entry[0] > newest - 2 * window
              and (silenced_until is None or entry[0] > silenced_until)]
    # Unfired, no window holds N signals, so two windows hold fewer than 2N: a bound, not a cut.
    state.recent = recent[-2 * rule.threshold:]
    for end, _ in state.recent:
        if end < t:
            continue
        floor = end - window if silenced_until is None else max(end - window, silenced_until)
        counted = [signal_id for stamp, signal_id in state.recent if floor < stamp <= end]
        if len(counted) >= rule.threshold:
            break
    else:
        return None
    fired_at = at if end == t else datetime.fromtimestamp(end, tz=at.tzinfo or UTC)
    state.fired_at = fired_at
    state.fired_until = fired_at + timedelta(minutes=rule.window_minutes)
    state.recent = []
    label = SIGNAL_TYPES[rule.signal_type].label.lower()
    reason = f"{len(counted)} × {label} within {_minutes(rule.window_minutes)}"
    return _Fire(state, counted, fired_at, reason)


def _minutes(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def evaluate_messages(message_ids) -> list[int]:
    """"A signal, then a negative message within the window": called once messages are
    classified. Each signal fires its rule at most once (its state remembers it did)."""
    from learning.models import Classification
    from responses.signal_cases import fire

    rules = {rule.pk: rule for rule in SignalRule.objects.filter(enabled=True,
                                                                 kind=SignalRule.Kind.FOLLOWED_BY_NEGATIVE)}
    if not rules:
        return []
    negatives = list(Classification.objects.filter(
        message_id__in=list(message_ids), is_current=True, sentiment="negative",
        message__direction="in", message__author__customer__isnull=False,
    ).values_list("message_id", "message__author__customer_id", "message__sent_at"))
    fired: list[int] = []
    for message_id, customer_id, sent_at in sorted(negatives, key=lambda n: n[2]):
        with transaction.atomic():
            states = SignalRuleState.objects.select_for_update().filter(
                rule_id__in=list(rules), key=f"c:{customer_id}", last_at__isnull=False).order_by("rule_id")
            for state in states:
                rule = rules[state.rule_id]
                delay = sent_at - state.last_at
                if not timedelta(0) <= delay <= timedelta(minutes=rule.window_minutes):
                    continue
                if state.fired_until is not None and state.fired_until >= state.last_at:
                    continue  # this signal already led to a firing
                state.fired_until = state.fired_at = state.last_at
                state.save(update_fields=["fired_until", "fired_at"])
                label = SIGNAL_TYPES[rule.signal_type].label.lower()
                reason = f"An unhappy message {_minutes(max(1, int(delay.total_seconds() // 60)))} after a {label}"
                fired.append(fire(rule, state, [state.last_signal_id], reason, sent_at, message_id=message_id).pk)
    return fired


def check_absence(now: datetime | None = None) -> list[int]:
    """Beat: fire "no signal of type T for N days" once per silence, reading only the states of
    absence rules whose last signal is old enough (an indexed range), never the signals."""
    from responses.signal_cases import fire

    now = now or timezone.now()
    fired: list[int] = []
    for rule in SignalRule.objects.filter(enabled=True, kind=SignalRule.Kind.ABSENCE):
        cutoff = now - timedelta(days=rule.absence_days)
        due = SignalRuleState.objects.filter(rule=rule, last_at__lt=cutoff).values_list("id", flat=True)
        for state_id in list(due[:5000]):
            with transaction.atomic():
                state = SignalRuleState.objects.select_for_update().filter(pk=state_id).first()
                if state is None or state.last_at is None or state.last_at >= cutoff:
                    continue
                if state.fired_until is not None and state.fired_until >= state.last_at:
                    continue  # already fired for this silence
                state.fired_until = state.fired_at = state.last_at
                state.save(update_fields=["fired_until", "fired_at"])
                label = SIGNAL_TYPES[rule.signal_type].label.lower()
                reason = f"No {label} for {rule.absence_days} day{'s' if rule.absence_days != 1 else ''}"
                fired.append(fire(rule, state, [state.last_signal_id] if state.last_signal_id else [], reason,
                                  now).pk)
    return fired


def naive_should_fire(rule: SignalRule, key_filter: dict, at: datetime, silenced_until: datetime | None) -> bool:
    """The reference the bench compares with: recount the signal table for this one event."""
    floor = at - timedelta(minutes=rule.window_minutes)
    if silenced_until is not None:
        floor = max(floor, silenced_until)
    count = Signal.objects.filter(type=rule.signal_type, occurred_at__gt=floor, occurred_at__lte=at,
                                  **key_filter).count()
    return count >= rule.threshold


def firings_for_case(case_id: int) -> list[SignalRuleFiring]:
    return list(SignalRuleFiring.objects.filter(case_id=case_id).select_related("rule")[:20])
