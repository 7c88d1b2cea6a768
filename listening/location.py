"""Where a customer is: their time zone, their last known location, the channel they answer on.

- Time zone, in this order (`customer_zone`, `time_zone_origin` says which in words):
  1. one a person or a system set for them (an agent, the API, an import: an IANA name, checked
     here), kept in Customer.time_zone with who set it;
  2. one the channel told us (Customer.channel_time_zone, the newest wins): the generic
     webhook's `author.timezone`, an email's Date header offset. The connector puts it on the
     message's raw as {"time_zone": {"zone", "from"}} (`time_zone_raw`) and a receiver of
     `messages_ingested` (listening.attributes) copies it onto the customer;
  3. their phone number's prefix, read with the `phonenumbers` library when the prefix names
     exactly one zone (+49 is Berlin; +1 212 New York; +1 alone, or a mobile range spanning
     zones, says nothing).
  A person's choice beats the channel because it is a decision (the customer told the agent, the
  CRM knows their address); the channel beats the prefix because it describes the device the
  customer writes from now, while a number travels with its owner. Rules read the customer's
  local time through `customer_zone`.
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
import re
from collections.abc import Callable
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


# Offsets that are not whole hours have no Etc/GMT zone: the zone that keeps that offset all year
# (or most of it) stands for them. Any other such offset is refused.
FRACTIONAL_OFFSET_ZONES = {
    -570: "Pacific/Marquesas", -210: "America/St_Johns", 210: "Asia/Tehran", 270: "Asia/Kabul",
    330: "Asia/Kolkata", 345: "Asia/Kathmandu", 390: "Asia/Yangon", 525: "Australia/Eucla",
    570: "Australia/Darwin", 630: "Australia/Lord_Howe", 765: "Pacific/Chatham",
}
OFFSET_RE = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?")
# Who said a channel time zone, in words (the `from` of time_zone_raw).
ZONE_SAID_BY = {"author": "the sender's time zone", "date_header": "the email's Date header",
                "profile": "the provider's user profile"}
SOURCE_WORDS = {"agent": "an agent", "api": "the API", "import": "an import", "signal": "a signal"}


def offset_zone(minutes: int) -> str:
    """An IANA name for a fixed offset east of UTC: whole hours are Etc/GMT-N (the sign is
    inverted in those names: UTC+2 is Etc/GMT-2); the usual half and quarter hours are the zone
    that keeps them; anything else (or beyond -12..+14 hours) is PayloadInvalid."""
    if minutes % 60 == 0 and -12 * 60 <= minutes <= 14 * 60:
        hours = minutes // 60
        return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"
    zone = FRACTIONAL_OFFSET_ZONES.get(minutes)
    if zone is None:
        raise PayloadInvalid(f"a UTC offset of {minutes} minutes names no time zone")
    return zone


def clean_channel_zone(value: Any, where: str = "timezone") -> str:
    """What a channel says about a customer's zone, as an IANA name: a name ("Europe/Berlin"), an
    offset as text ("+02:00", "-0700", "UTC+5:30"), or hours as a number (Messenger's profile
    gives -7 or 5.5). PayloadInvalid naming `where` otherwise."""
    if isinstance(value, bool) or value is None or value == "":
        raise PayloadInvalid(f"{where} must be an IANA time zone (Europe/Berlin) or a UTC offset (+02:00)")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 14:
            raise PayloadInvalid(f"{where} must be an offset in hours between -12 and +14")
        return _offset(round(value * 60), where)
    if not isinstance(value, str) or len(value) > ZONE_MAX:
        raise PayloadInvalid(f"{where} must be an IANA time zone (Europe/Berlin) or a UTC offset (+02:00)")
    text = value.strip()
    found = OFFSET_RE.fullmatch(text)
    if found:
        sign, hours, minutes = found.groups()
        total = int(hours) * 60 + int(minutes or 0)
        if int(minutes or 0) >= 60:
            raise PayloadInvalid(f"{where}: {text!r} is not a UTC offset")
        return _offset(-total if sign == "-" else total, where)
    try:
        return clean_time_zone(text)
    except PayloadInvalid as error:
        raise PayloadInvalid(f"{where}: {error.reason}") from None


def _offset(minutes: int, where: str) -> str:
    try:
        return offset_zone(minutes)
    except PayloadInvalid as error:
        raise PayloadInvalid(f"{where}: {error.reason}") from None


def time_zone_raw(zone: str, said_by: str) -> dict[str, dict[str, str]]:
    """What a connector adds to a message's raw when the channel tells the author's zone."""
    return {"time_zone": {"zone": zone, "from": said_by}}


def message_time_zone(message: Any) -> tuple[str, str] | None:
    """(zone, who said it) from a message's raw, or None (absent, or not a zone)."""
    raw = message.raw.get("time_zone") if isinstance(message.raw, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        zone = clean_time_zone(raw.get("zone"))
    except PayloadInvalid:
        return None
    said_by = raw.get("from") if raw.get("from") in ZONE_SAID_BY else "author"
    return (zone, said_by) if zone else None


def customer_zone(customer: Any) -> ZoneInfo | None:
    """The customer's time zone: set for them, else what their channel said, else their phone's
    prefix; None if none of them knows."""
    name = zone_and_origin(customer)[0]
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_and_origin(customer: Any) -> tuple[str, str]:
    """(the zone's name, where it came from: "set", "channel", "phone"), or ("", "")."""
    if customer is None:
        return "", ""
    if customer.time_zone:
        return customer.time_zone, "set"
    if getattr(customer, "channel_time_zone", ""):
        return customer.channel_time_zone, "channel"
    zone = zone_for_phone(customer.phone) if customer.phone.startswith("+") else ""
    return (zone, "phone") if zone else ("", "")


def _channel_word(key: str) -> str:
    return key.replace("_", " ").capitalize() or "a channel"


def time_zone_origin(customer: Any, label: Callable[[str], str] = _channel_word) -> str:
    """Why the profile shows this zone, in words: "set by an agent", "from Website (the sender's
    time zone)", "from the phone number's prefix (+49)". `label` names a channel key (callers
    pass the connectors' presentation: this module sits below the connectors)."""
    zone, origin = zone_and_origin(customer)
    if origin == "set":
        return f"set by {SOURCE_WORDS.get(customer.time_zone_source, customer.time_zone_source or 'hand')}"
    if origin == "channel":
        channel, _, said_by = (customer.channel_time_zone_source or "").partition(":")
        words = ZONE_SAID_BY.get(said_by, "")
        return f"from {label(channel)}" + (f" ({words})" if words else "")
    if origin == "phone":
        prefix = _country_prefix(customer.phone)
        return f"from the phone number's prefix ({prefix})" if prefix else "from the phone number"
    return ""


def zones_set_aside(customer: Any, label: Callable[[str], str] = _channel_word) -> list[str]:
    """The zones lower in the order that the shown one outranks, in words ("Website said
    Etc/GMT-2", "the phone number's prefix says Europe/Berlin"), so "why" shows the whole story."""
    _zone, origin = zone_and_origin(customer)
    aside = []
    if origin == "set" and customer.channel_time_zone:
        channel = (customer.channel_time_zone_source or "").partition(":")[0]
        aside.append(f"{label(channel)} said {customer.channel_time_zone}")
    if origin in ("set", "channel") and customer.phone.startswith("+"):
        phone = zone_for_phone(customer.phone)
        if phone:
            aside.append(f"the phone number's prefix says {phone}")
    return aside


def _country_prefix(phone: str) -> str:
    try:
        return f"+{phonenumbers.parse(phone, None).country_code}"
    except phonenumbers.NumberParseException:
        return ""


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
