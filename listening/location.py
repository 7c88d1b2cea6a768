"""Where a customer is: their time zone, their last known location, the channel they answer on.

- Time zone: what was set for them (by the channel, the API, an import or an agent: an IANA
  name, checked here) wins; otherwise their phone number's prefix, read with the `phonenumbers`
  library when the prefix names exactly one zone (+49 is Berlin; +1 212 New York; +1 alone, or
  a mobile range spanning zones, says nothing). Rules read the customer's local time through
  `customer_zone`.
- Location: WhatsApp (Meta) and Twilio location messages carry coordinates. The connectors keep
  them on the message's raw as {"location": {"lat", "lon"}} (`message_location`), and a receiver
  of `messages_ingested` (listening.attributes) copies the newest onto the customer with when and
  where it came from.
- Preferred channel: the channel of the customer's newest inbound message is where they answer
  (after a proactive message too: the answer is what counts); an agent's choice overrides it.

No model is imported here (customers and messages come in as arguments): the connectors parse
coordinates with these helpers, and the models import the connectors.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from listening.exceptions import PayloadInvalid

ZONE_MAX = 64


def clean_time_zone(value: Any) -> str:
    """An IANA time zone name ("Europe/Berlin"), or "" to clear; PayloadInvalid otherwise."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > ZONE_MAX or "/" not in value and value != "UTC":
        raise PayloadInvalid("time_zone must be an IANA name such as Europe/Berlin")
    return _zone(value).key


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PayloadInvalid(f"time_zone {name[:64]!r} is not a known IANA time zone") from None


@lru_cache(maxsize=4096)
def zone_for_phone(phone: str) -> str:
    """The one time zone a phone number's prefix names, or "" when it names none or several."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z != phone_timezone.UNKNOWN_TIMEZONE]
    return zones[0] if len(zones) == 1 else ""


def customer_zone(customer: Any) -> ZoneInfo | None:
    """The customer's time zone, from what was set for them or else their phone; None if unknown."""
    if customer is None:
        return None
    name = customer.time_zone or (zone_for_phone(customer.phone) if customer.phone.startswith("+") else "")
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def time_zone_origin(customer: Any) -> str:
    """Why the profile shows this zone, in words."""
    if customer.time_zone:
        return f"set by {customer.time_zone_source or 'hand'}"
    return "from the phone number" if customer_zone(customer) else ""


# --- Coordinates ------------------------------------------------------------------------------


def clean_coordinates(lat: Any, lon: Any, where: str = "location") -> tuple[float, float]:
    """(latitude, longitude) as floats within range, from numbers or numeric text; PayloadInvalid."""
    try:
        if isinstance(lat, bool) or isinstance(lon, bool):
            raise ValueError
        lat_f, lon_f = float(lat), float(lon)
    except (TypeError, ValueError):
        raise PayloadInvalid(f"{where} must have a numeric latitude and longitude") from None
    if not (math.isfinite(lat_f) and math.isfinite(lon_f)) or not -90 <= lat_f <= 90 or not -180 <= lon_f <= 180:
        raise PayloadInvalid(f"{where}: latitude must be within -90..90 and longitude within -180..180")
    return round(lat_f, 6), round(lon_f, 6)


def location_raw(lat: float, lon: float) -> dict[str, dict[str, float]]:
    """What a connector adds to a message's raw for a shared location."""
    return {"location": {"lat": lat, "lon": lon}}


def location_text(lat: float, lon: float, *labels: str) -> str:
    """The words a location message is stored with: its name or address when given (what the
    customer sees in their app), else where it is; the coordinates themselves are on the raw."""
    named = ", ".join(label.strip() for label in labels if label and label.strip())
    return named or f"Shared a location ({lat:.5f}, {lon:.5f})"


def message_location(message: Any) -> tuple[float, float] | None:
    raw = message.raw.get("location") if isinstance(message.raw, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return clean_coordinates(raw.get("lat"), raw.get("lon"))
    except PayloadInvalid:
        return None
