"""The case page's customer profile, as an inclusion tag so the case view stays as it is:
{% customer_profile %} shows the tier, local time, preferred channel, last known location and
custom attributes, with why each is known behind a disclosure, and the agent's edit form."""

from __future__ import annotations

from django import template
from django.utils import timezone

from listening.connectors import channel_presentations, presentation
from listening.location import customer_zone, time_zone_origin, zones_set_aside
from listening.models import AttributeDefinition, AttributeKind, CustomerTier

register = template.Library()


def _label(channel: str) -> str:
    return presentation(channel).label


@register.inclusion_tag("console/includes/profile.html", takes_context=True)
def customer_profile(context) -> dict:
    case, customer = context.get("case"), context.get("customer")
    definitions = list(AttributeDefinition.objects.all())
    values = (customer.attributes or {}) if customer else {}
    zone = customer_zone(customer)
    located = customer is not None and customer.location_lat is not None
    return {
        "case": case, "customer": customer, "can_edit": bool(context.get("can_reply")) and case is not None,
        "csrf_token": context.get("csrf_token"),
        "tier": customer.get_tier_display() if customer and customer.tier else "",
        "zone": zone.key if zone else "", "zone_origin": time_zone_origin(customer, _label) if customer else "",
        "zones_aside": zones_set_aside(customer, _label) if customer else [],
        # Formatted here: the template's date filters would turn it back into the server's zone.
        "local_time": timezone.now().astimezone(zone).strftime("%H:%M") if zone else "",
        "local_day": timezone.now().astimezone(zone).strftime("%a") if zone else "",
        "channel": presentation(customer.preferred_channel).label if customer and customer.preferred_channel else "",
        "channel_origin": ("chosen by an agent" if customer and customer.channel_override
                           else "where they last wrote" if customer and customer.learned_channel else ""),
        "location": {"lat": customer.location_lat, "lon": customer.location_lon, "at": customer.location_at,
                     "source": presentation(customer.location_source).label} if located else None,
        "attributes": [{"key": d.key, "name": d.name, "kind": d.kind, "choices": d.choices,
                        "value": values.get(d.key)} for d in definitions],
        "choice_kind": AttributeKind.CHOICE, "number_kind": AttributeKind.NUMBER, "date_kind": AttributeKind.DATE,
        "tiers": CustomerTier.choices, "current_tier": customer.tier if customer else "",
        "current_zone": customer.time_zone if customer else "",
        "current_channel": customer.channel_override if customer else "",
        "channels": [(p.key, p.label) for p in channel_presentations()],
    }
