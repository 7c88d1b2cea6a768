"""The case page's signal panels, as inclusion tags so the case view stays as it is:

- {% case_signals %}: why a proactive case exists (the rule that fired and its signals), and the
  "Send proactive message" form with the template picker where care may write first;
- {% customer_signals %}: the customer's recent signals and rule firings, newest first.
"""

from __future__ import annotations

import uuid

from django import template
from django.conf import settings
from django.utils import timezone

from listening.models import Signal
from listening.signal_types import SIGNAL_TYPES
from responses import proactive
from responses.models import ProactiveMessage, SignalRuleFiring
from responses.proactive import PROACTIVE_TAG

register = template.Library()

TIMELINE_LENGTH = 20
REASON_SIGNALS = 12


def _signal_rows(signals) -> list[dict]:
    rows = []
    for signal in signals:
        kind = SIGNAL_TYPES.get(signal.type)
        rows.append({"signal": signal, "label": kind.label if kind else signal.type,
                     "text": kind.describe(signal.payload or {}) if kind else signal.type})
    return rows


@register.inclusion_tag("console/includes/signals_reason.html", takes_context=True)
def case_signals(context) -> dict:
    case = context["case"]
    firings = list(SignalRuleFiring.objects.filter(case=case).select_related("rule")[:5])
    wanted = [i for firing in firings for i in firing.signal_ids][:200]
    by_id = {s.pk: s for s in Signal.objects.filter(pk__in=wanted)}
    for firing in firings:
        found = [by_id[i] for i in firing.signal_ids if i in by_id]
        firing.rows = _signal_rows(sorted(found, key=lambda s: s.occurred_at)[-REASON_SIGNALS:])
        firing.more = max(0, len(firing.signal_ids) - len(firing.rows))
    return {"case": case, "firings": firings, "csrf_token": context.get("csrf_token"),
            "send": _send_panel(context, case, firings)}


def _send_panel(context, case, firings) -> dict | None:
    """What the "Send proactive message" form needs, or None where it has no place: a reader,
    a closed case, or a case that is not proactive whose customer can simply be answered."""
    if not context.get("can_reply") or not case.is_active:
        return None
    target = proactive.target_for(case)
    if target is None:
        return None
    now = timezone.now()
    is_proactive = PROACTIVE_TAG in (case.tags or []) or bool(firings)
    if not is_proactive and target.window_open(now):
        return None
    hours = settings.CXM_PROACTIVE_CAP_HOURS
    sent = ProactiveMessage.objects.filter(customer=target.customer,
                                           created_at__gt=now - timezone.timedelta(hours=hours)).count()
    return {
        "target": target,
        "templates": [{"template": t, "values": range(1, t.params + 1)} for t in target.templates],
        "window_open": target.window_open(now),
        "opted_out": target.customer.proactive_opt_out,
        "capped": sent >= settings.CXM_PROACTIVE_CAP,
        "cap": settings.CXM_PROACTIVE_CAP, "cap_hours": hours,
        "sent": proactive.for_case(case),
        "key": uuid.uuid4().hex,
    }


@register.inclusion_tag("console/includes/signals_timeline.html", takes_context=True)
def customer_signals(context) -> dict:
    customer = context.get("customer")
    if customer is None:
        return {"rows": [], "customer": None}
    signals = Signal.objects.filter(customer=customer).order_by("-occurred_at", "-id")[:TIMELINE_LENGTH]
    firings = list(SignalRuleFiring.objects.filter(customer=customer).select_related("rule")[:5])
    return {"customer": customer, "rows": _signal_rows(signals), "firings": firings}
