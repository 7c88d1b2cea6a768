"""Merge two conversations of one customer into one case, and undo it.

The source case is closed and its conversation's messages, replies and notes show on the
target's timeline (nothing is moved between threads: each stays on its channel, so replies go
out where the target's customer wrote, and undo has nothing to move back). While the merge
stands, the customer's new messages on the source's thread update the target
(responses.routing._merge_targets). When the two
conversations belong to two customer records of the same person, the agent says so and the
records are merged too, with listening.actions.merge_customers. A MergeRecord keeps what the
merge changed, so undo restores it exactly: the source case's fields, and the removed customer
record (same id, same fields, its contacts and other rows).
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from listening.actions import merge_customers
from listening.models import Contact, Customer
from responses import access, event_types, events
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest
from responses.models import Case, CaseStatus, MergeRecord, SlaState
from responses.snooze import activity_dict, record_activity
from responses.summaries import case_summary, user_dict

# The source case's fields the merge changes, restored by undo.
CASE_FIELDS = ("status", "resolved_at", "sla_state", "sla_due_at", "waiting_since", "awaiting_assignment",
               "snoozed", "snoozed_until")
CUSTOMER_FIELDS = ("display_name", "email", "phone", "vip")
DATETIMES = {"resolved_at", "sla_due_at", "waiting_since", "snoozed_until"}


def conversation_ids(case: Case) -> list[int]:
    """The conversations on a case's timeline: its own and those merged into it (not undone)."""
    merged = (MergeRecord.objects.filter(target=case, undone_at__isnull=True)
              .values_list("source__conversation_id", flat=True))
    return [case.conversation_id, *merged]


def case_ids(case: Case) -> list[int]:
    merged = MergeRecord.objects.filter(target=case, undone_at__isnull=True).values_list("source_id", flat=True)
    return [case.pk, *merged]


def live_merge_of(case: Case) -> MergeRecord | None:
    """The merge that closed this case into another, if it stands."""
    return (MergeRecord.objects.filter(source=case, undone_at__isnull=True).select_related("target").first())


def customer_of(case: Case) -> Customer | None:
    contact = case.conversation.contact
    return contact.customer if contact else None


def merge_cases(user, target_id, source_id, *, same_person: bool = False) -> MergeRecord:
    """Merge case `source_id` into `target_id`. Both must be visible to the user (else 404: a
    case of a team the user cannot see does not exist for them). Two customer records are only
    merged when the agent confirms they are one person (`same_person`)."""
    access.require_reply(user)
    with transaction.atomic():
        first, second = sorted([_id(target_id), _id(source_id)])
        locked = {c.pk: c for c in (access.get_case(user, first, for_update=True),
                                    access.get_case(user, second, for_update=True))}
        target, source = locked.get(_id(target_id)), locked.get(_id(source_id))
        if target is None or source is None or target.pk == source.pk:
            raise InvalidRequest("choose another case to merge into this one")
        if live_merge_of(source):
            raise Conflict(f"case #{source.pk} is already merged into another case")
        host = live_merge_of(target)
        if host:
            raise InvalidRequest(f"case #{target.pk} was merged into #{host.target_id}: merge into that one")
        if MergeRecord.objects.filter(target=source, undone_at__isnull=True).exists():
            raise InvalidRequest(f"other cases were merged into #{source.pk}: merge #{target.pk} into it instead")
        customers = _merge_customers(target, source, same_person)
        record = MergeRecord.objects.create(target=target, source=source, by=user, before=_snapshot(source),
                                            customers=customers)
        source.status, source.resolved_at = CaseStatus.CLOSED, source.resolved_at or timezone.now()
        source.sla_state, source.sla_due_at, source.waiting_since = SlaState.NONE, None, None
        source.awaiting_assignment, source.snoozed, source.snoozed_until = False, False, None
        source.save()
        _announce(target, "merged", f"Case #{source.pk} ({source.conversation.channel}) merged into this case",
                  user, record)
        _announce(source, "merged", f"Merged into case #{target.pk}", user, record)
    return record


def undo_merge(user, merge_id) -> MergeRecord:
    """Put both cases back as they were before the merge."""
    access.require_reply(user)
    with transaction.atomic():
        record = MergeRecord.objects.select_for_update().filter(pk=_id(merge_id, "merge")).first()
        if record is None:
            raise CaseNotFound("no such merge")
        first, second = sorted([record.target_id, record.source_id])
        cases = {c.pk: c for c in (access.get_case(user, first, for_update=True),
                                   access.get_case(user, second, for_update=True))}
        if record.undone_at:
            raise Conflict("this merge was already undone")
        target, source = cases[record.target_id], cases[record.source_id]
        if record.customers:
            _restore_customers(record.customers)
        if source.status == CaseStatus.CLOSED:  # not reopened by the customer since: restore as it was
            for name in CASE_FIELDS:
                value = record.before.get(name)
                setattr(source, name, parse_datetime(value) if name in DATETIMES and value else value)
            source.save()
        record.undone_at, record.undone_by = timezone.now(), user
        record.save(update_fields=["undone_at", "undone_by"])
        _announce(target, "unmerged", f"Merge with case #{source.pk} undone", user, record)
        _announce(source, "unmerged", f"No longer merged into case #{target.pk}", user, record)
    return record


def _id(value, what: str = "case") -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CaseNotFound(f"no such {what}")
    if not 0 < number < 2**62:
        raise CaseNotFound(f"no such {what}")
    return number


def _snapshot(case: Case) -> dict:
    out = {}
    for name in CASE_FIELDS:
        value = getattr(case, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _announce(case: Case, kind: str, text: str, user, record: MergeRecord) -> None:
    activity = record_activity(case, kind, text, user, {"merge": record.pk, "target": record.target_id,
                                                        "source": record.source_id})
    events.emit(event_types.CASE_UPDATED, {"case": case_summary(case), "by": user_dict(user),
                                 "activity": activity_dict(activity)}, team_id=case.team_id, case_id=case.pk)


# --- Customers ---------------------------------------------------------------------------------


def _merge_customers(target: Case, source: Case, same_person: bool) -> dict:
    """Merge the source's customer record into the target's when they differ (and the agent
    confirmed); returns what undo needs, or {} when there was nothing to merge."""
    kept, gone = customer_of(target), customer_of(source)
    if _same_contact(target, source) or (kept is not None and gone is not None and kept.pk == gone.pk):
        return {}  # one customer: nothing to confirm
    if kept is None or gone is None:
        if not same_person:
            raise InvalidRequest("these conversations have no customer record in common: confirm that they are "
                                 "the same person to merge them")
        return {}
    if not same_person:
        raise InvalidRequest(f"these conversations belong to two customer records ({kept} and {gone}): confirm "
                             "that they are the same person to merge them and their records")
    undo = {"kept": kept.pk, "kept_before": {n: getattr(kept, n) for n in CUSTOMER_FIELDS},
            "removed": {"id": gone.pk, **{n: getattr(gone, n) for n in CUSTOMER_FIELDS},
                        "created_at": gone.created_at.isoformat()},
            "contacts": list(Contact.objects.filter(customer=gone).values_list("id", flat=True)),
            "related": _move_related(gone, kept)}
    merge_customers(kept, gone)
    return undo


def _same_contact(a: Case, b: Case) -> bool:
    return a.conversation.contact_id is not None and a.conversation.contact_id == b.conversation.contact_id


def _related_models():
    """Rows that belong to a customer other than its contacts (signals, devices, tags...): read
    from the model, so a new kind of row is carried over without touching this file."""
    for relation in Customer._meta.related_objects:
        if relation.one_to_many and relation.related_model is not Contact:
            yield relation.related_model, relation.field.name


def _move_related(gone: Customer, kept: Customer) -> dict:
    """merge_customers deletes the removed record, and its other rows with it: move them to the
    kept record first. A row that would break a unique rule there (the same tag on both) is
    kept as data, so undo can recreate it."""
    moved: dict[str, dict] = {}
    for model, field in _related_models():
        label = model._meta.label
        ids, copies = [], []
        for row in model.objects.filter(**{field: gone}):
            try:
                with transaction.atomic():
                    model.objects.filter(pk=row.pk).update(**{field: kept})
                ids.append(row.pk)
            except IntegrityError:
                copies.append({k: _plain(v) for k, v in model_to_dict(row).items()} | {"id": row.pk})
        if ids or copies:
            moved[label] = {"field": field, "ids": ids, "copies": copies}
    return moved


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _restore_customers(data: dict) -> None:
    from django.apps import apps

    kept = Customer.objects.select_for_update().filter(pk=data["kept"]).first()
    if kept is None:
        raise Conflict("the merged customer record was deleted since: this merge cannot be undone")
    removed = data["removed"]
    if Customer.objects.filter(pk=removed["id"]).exists():
        raise Conflict("the customer record this merge removed exists again: this merge cannot be undone")
    gone = Customer.objects.create(id=removed["id"], **{n: removed[n] for n in CUSTOMER_FIELDS})
    Customer.objects.filter(pk=gone.pk).update(created_at=parse_datetime(removed["created_at"]))
    Contact.objects.filter(pk__in=data["contacts"], customer=kept).update(customer=gone)
    for label, moved in data.get("related", {}).items():
        model = apps.get_model(label)
        field = moved["field"]
        model.objects.filter(pk__in=moved["ids"]).update(**{field: gone})
        for copy in moved["copies"]:
            values = {k: v for k, v in copy.items() if k != field}
            model.objects.create(**{f"{field}_id": gone.pk}, **values)
    for name, value in data["kept_before"].items():
        setattr(kept, name, value)
    kept.save()
