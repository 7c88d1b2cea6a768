"""Meta webhook payloads -> InboundMessages, for Messenger, Instagram messaging and WhatsApp.

Kept apart from the connector class so the shapes Meta documents live in one readable place:

- Messenger (object "page") and Instagram (object "instagram"): entry[].messaging[] (and
  entry[].standby[] while another app holds thread control) with sender/recipient/timestamp (ms)
  and a `message` {mid, text, attachments, reply_to{mid}, is_echo} or a `postback` {mid, title}.
- WhatsApp (object "whatsapp_business_account"): entry[].changes[] with field "messages" and a
  value {metadata{phone_number_id}, contacts[{profile{name, username}, wa_id, user_id}],
  messages[{from, from_user_id, id, timestamp, type, <type>{...}, context{id}}], statuses[]}.

Receipts (delivery, read, statuses), reactions on Messenger, edits, deletions and non-message
changes (feed, comments, template updates) carry no new customer text: they are skipped.
"""

from __future__ import annotations

import re
from typing import Any

from listening import location
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.connectors.payload import from_unix, optional, require
from listening.exceptions import PayloadInvalid

CHANNELS = {"page": "messenger", "instagram": "instagram", "whatsapp_business_account": "whatsapp"}
MAX_MESSAGES_PER_DELIVERY = 1000
# Meta's ids (mids, wamids, PSIDs, wa_ids, BSUIDs) are printable ASCII. Refusing anything else
# keeps NUL bytes and surrogates out of indexed id columns (PostgreSQL rejects NUL outright).
_ID_RE = re.compile(r"[\x21-\x7e]{1,255}")
_KIND_RE = re.compile(r"[a-z_]{1,30}")
_PHONE_RE = re.compile(r"[1-9]\d{6,14}")  # E.164 digits without the plus
# Where each WhatsApp message type keeps its words, best first; other types get "[type]".
_WHATSAPP_TEXT = {
    "text": ("body",), "image": ("caption",), "video": ("caption",), "document": ("caption", "filename"),
    "button": ("text",), "system": ("body",), "reaction": ("emoji",), "order": ("text",),
}


def parse_delivery(payload: Any) -> list[InboundMessage]:
    """Every message in every entry (and every change) of one delivery, in payload order."""
    kind = require(payload, "object", str)
    channel = CHANNELS.get(kind)
    if channel is None:
        raise PayloadInvalid(f"unsupported object {kind[:40]!r}: expected one of {', '.join(CHANNELS)}")
    messages: list[InboundMessage] = []
    for i, entry in enumerate(require(payload, "entry", list)):
        path = f"entry[{i}]"
        if channel == "whatsapp":
            messages.extend(_whatsapp_entry(entry, path))
        else:
            messages.extend(_messaging_entry(entry, path, channel))
        if len(messages) > MAX_MESSAGES_PER_DELIVERY:
            raise PayloadInvalid(f"at most {MAX_MESSAGES_PER_DELIVERY} messages per delivery")
    return messages


def _id(obj: Any, key: str, path: str) -> str:
    value = require(obj, key, str, path)
    if not _ID_RE.fullmatch(value):
        raise PayloadInvalid(f"field {path}.{key} must be 1 to 255 printable ASCII characters")
    return value


def _optional_id(obj: Any, key: str, path: str) -> str:
    return _id(obj, key, path) if optional(obj, key, str, "", path) else ""


def _items(obj: Any, key: str, path: str) -> list[tuple[str, Any]]:
    return [(f"{path}.{key}[{i}]", item) for i, item in enumerate(optional(obj, key, list, [], path))]


# --- Messenger and Instagram -----------------------------------------------------------------
def _messaging_entry(entry: Any, path: str, channel: str) -> list[InboundMessage]:
    business_id = _id(entry, "id", path)
    events = _items(entry, "messaging", path) + _items(entry, "standby", path)
    found = (_messaging_event(event, where, channel, business_id) for where, event in events)
    return [message for message in found if message is not None]


def _messaging_event(event: Any, path: str, channel: str, business_id: str) -> InboundMessage | None:
    _object(event, path)
    message = optional(event, "message", dict, {}, path)
    postback = optional(event, "postback", dict, {}, path)
    if message:
        if optional(message, "is_deleted", bool, False, f"{path}.message"):
            return None  # Instagram's "unsent" notice: nothing to answer
        body, where = message, f"{path}.message"
        text = _messenger_text(message, where)
    elif postback and optional(postback, "mid", str, "", f"{path}.postback"):
        body, where = postback, f"{path}.postback"
        text = optional(postback, "title", str, "", where) or "[postback]"
    else:
        return None  # delivery, read, reaction, referral, optin...: receipts, not messages
    echo = optional(body, "is_echo", bool, False, where)
    sender, recipient = _party(event, "sender", path), _party(event, "recipient", path)
    customer = recipient if echo else sender
    reply_to = optional(body, "reply_to", dict, {}, where)
    return InboundMessage(
        external_id=_id(body, "mid", where),
        text=text,
        author=InboundAuthor(external_id=sender),
        sent_at=from_unix(event.get("timestamp"), f"{path}.timestamp"),
        channel=channel,
        thread_id=f"{business_id}:{customer}",
        parent_external_id=_optional_id(reply_to, "mid", f"{where}.reply_to"),
        # Echoes are what the page itself sent (from CXM or from Meta's own inbox): kept as
        # outbound so the conversation shows both sides, whoever answered.
        direction="out" if echo else "in",
        raw=event,
    )


def _party(event: dict, key: str, path: str) -> str:
    party, where = require(event, key, dict, path), f"{path}.{key}"
    # Guests of the chat plugin and checkbox opt-ins are known by a user_ref until they write.
    return _id(party, "id" if optional(party, "id", str, "", where) else "user_ref", where)


def _messenger_text(message: dict, path: str) -> str:
    text = optional(message, "text", str, "", path)
    if text:
        return text
    kinds = [_kind(optional(item, "type", str, "", where)) for where, item in _items(message, "attachments", path)]
    if kinds:
        return " ".join(f"[{kind}]" for kind in kinds)
    if optional(message, "sticker_id", str, "", path):
        return "[sticker]"
    return "[unsupported]" if message.get("is_unsupported") else "[empty message]"


# --- WhatsApp --------------------------------------------------------------------------------
def _whatsapp_entry(entry: Any, path: str) -> list[InboundMessage]:
    messages: list[InboundMessage] = []
    for where, change in _items(entry, "changes", path):
        if optional(change, "field", str, "messages", where) != "messages":
            continue  # template, account and quality updates are not conversations
        value = require(change, "value", dict, where)
        messages.extend(_whatsapp_value(value, f"{where}.value"))
    return messages


def _whatsapp_value(value: dict, path: str) -> list[InboundMessage]:
    items = _items(value, "messages", path)
    if not items:
        return []  # statuses (sent, delivered, read, failed) and errors only
    phone_number_id = _id(require(value, "metadata", dict, path), "phone_number_id", f"{path}.metadata")
    contacts: dict[str, dict] = {}
    for where, contact in _items(value, "contacts", path):
        for key in ("wa_id", "user_id"):
            if optional(contact, key, str, "", where):
                contacts[require(contact, key, str, where)] = contact
    only = next(iter(contacts.values())) if len({id(c) for c in contacts.values()}) == 1 else {}
    return [_whatsapp_message(item, where, phone_number_id, contacts, only) for where, item in items]


def _whatsapp_message(
    item: Any, path: str, phone_number_id: str, contacts: dict[str, dict], only: dict
) -> InboundMessage:
    _object(item, path)
    wa_id = _optional_id(item, "from", path)
    # A user with a WhatsApp username may hide their number: then only the business-scoped id.
    user_id = _optional_id(item, "from_user_id", path)
    contact = contacts.get(wa_id) or contacts.get(user_id) or only
    author_id = wa_id or user_id or _optional_id(contact, "user_id", f"{path}.contact")
    if not author_id:
        raise PayloadInvalid(f"missing field {path}.from")
    profile = optional(contact, "profile", dict, {}, f"{path}.contact")
    context = optional(item, "context", dict, {}, path)
    reaction = optional(item, "reaction", dict, {}, path)
    return InboundMessage(
        external_id=_id(item, "id", path),
        text=_whatsapp_text(item, path),
        author=InboundAuthor(
            external_id=author_id,
            handle=optional(profile, "username", str, "", f"{path}.contact.profile"),
            display_name=optional(profile, "name", str, "", f"{path}.contact.profile"),
            # The number WhatsApp verified at sign-up, but wa_id is not always the number the
            # customer gives elsewhere (Brazil and Mexico drop or add a digit), so it is kept
            # unverified: it is shown to agents and never merges two people into one Customer.
            phone=f"+{wa_id}" if _PHONE_RE.fullmatch(wa_id) else "",
        ),
        sent_at=from_unix(item.get("timestamp"), f"{path}.timestamp"),
        channel="whatsapp",
        thread_id=f"{phone_number_id}:{author_id}",
        parent_external_id=_optional_id(context, "id", f"{path}.context")
        or _optional_id(reaction, "message_id", f"{path}.reaction"),
        raw={"metadata": {"phone_number_id": phone_number_id}, "contact": contact, "message": item,
             **_whatsapp_location(item, path)},
    )


def _whatsapp_location(item: dict, path: str) -> dict:
    """A location message's coordinates, kept on the raw where listening.location finds them."""
    if item.get("type") != "location":
        return {}
    body = optional(item, "location", dict, {}, path)
    lat, lon = location.clean_coordinates(body.get("latitude"), body.get("longitude"), f"{path}.location")
    return location.location_raw(lat, lon)


def _whatsapp_text(item: dict, path: str) -> str:
    kind = _kind(optional(item, "type", str, "", path))
    body = optional(item, kind, dict, {}, path) if kind in item else {}
    if kind == "interactive":  # button_reply / list_reply carry what the customer picked
        body = optional(body, optional(body, "type", str, "", f"{path}.{kind}"), dict, {}, f"{path}.{kind}")
        keys: tuple[str, ...] = ("title", "description", "body")
    elif kind == "location":
        lat, lon = location.clean_coordinates(body.get("latitude"), body.get("longitude"), f"{path}.location")
        return location.location_text(lat, lon, optional(body, "name", str, "", f"{path}.location"),
                                      optional(body, "address", str, "", f"{path}.location"))
    else:
        keys = _WHATSAPP_TEXT.get(kind, ())
    for key in keys:
        text = optional(body, key, str, "", f"{path}.{kind}")
        if text.strip():
            return text
    return "[reaction removed]" if kind == "reaction" else f"[{kind}]"


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise PayloadInvalid(f"{path} must be an object")


def _kind(value: str) -> str:
    return value if _KIND_RE.fullmatch(value) else "unknown"
