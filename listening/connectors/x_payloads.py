"""X payloads as messages: API v2 posts (polling, backfill) and the Account Activity API's
v1.1-shaped posts and direct-message events (webhooks), plus X's weighted length of a post.

Every reader raises PayloadInvalid naming the field; the connector turns that into a 400 for a
webhook and into ProviderUnavailable (retried, nothing stored) for a page it fetched."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from listening import times
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.connectors.payload import from_iso, from_unix, optional, require
from listening.exceptions import PayloadInvalid
from listening.sanitize import clean_text

CHANNEL, DM_CHANNEL = "x", "x_dm"
ID_RE = re.compile(r"[0-9]{1,19}")  # post, user and event ids: 64-bit snowflakes as decimal strings
USERNAME_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
V1_DATE = "%a %b %d %H:%M:%S %z %Y"  # Wed Oct 10 20:19:24 +0000 2018
SNOWFLAKE_EPOCH_MS = 1288834974657


# --- API v2 (polling) ----------------------------------------------------------------------------
def users_by_id(includes: Any, where: str) -> dict[str, dict[str, Any]]:
    """includes.users of a v2 answer, by id (expansions=author_id)."""
    users = optional(includes, "users", list, [], where)
    found = {}
    for index, user in enumerate(users):
        found[x_id(user, "id", f"{where}.users[{index}]")] = user
    return found


def post_message(post: Any, users: dict[str, dict[str, Any]], own_id: str, where: str) -> InboundMessage | None:
    """A v2 post as a message; None for a repost (the original is what a person wrote), for
    our own posts and for a post without words."""
    if not isinstance(post, dict):
        raise PayloadInvalid(f"{where} must be an object")
    post_id, author_id = x_id(post, "id", where), x_id(post, "author_id", where)
    references = _references(post, where)
    sent_at = from_iso(require(post, "created_at", str, where), f"{where}.created_at")
    note = optional(post, "note_tweet", dict, {}, where)  # a long post's full text
    text = plain_text(optional(note, "text", str, "", f"{where}.note_tweet") or require(post, "text", str, where))
    conversation = x_id(post, "conversation_id", where) if post.get("conversation_id") is not None else ""
    if "retweeted" in references or author_id == own_id or not text.strip():
        return None
    user = users.get(author_id, {})
    author = _v2_author(author_id, user, f"{where}.author")
    return InboundMessage(
        external_id=post_id, text=clean_text(text), author=author, sent_at=sent_at, channel=CHANNEL,
        thread_id=conversation, parent_external_id=references.get("replied_to", ""),
        url=post_url(author.handle, post_id), raw={"data": post, "author": user},
    )


def _references(post: dict[str, Any], where: str) -> dict[str, str]:
    found = {}
    for index, ref in enumerate(optional(post, "referenced_tweets", list, [], where)):
        path = f"{where}.referenced_tweets[{index}]"
        found[require(ref, "type", str, path)] = x_id(ref, "id", path)
    return found


def _v2_author(author_id: str, user: dict[str, Any], where: str) -> InboundAuthor:
    username = optional(user, "username", str, "", where)
    metrics = optional(user, "public_metrics", dict, {}, where)
    return _author(author_id, username, optional(user, "name", str, "", where), metrics.get("followers_count"))


# --- Account Activity API (webhooks) -------------------------------------------------------------
def activity_messages(body: Any, user_id: str) -> list[InboundMessage]:
    """The mentions and direct messages of one delivery for the subscribed `for_user_id`.

    Posts by the account itself, reposts, mentions by accounts it blocked and DMs it sent are
    skipped; so are likes, follows, typing indicators and the other activity kinds."""
    if not isinstance(body, dict):
        raise PayloadInvalid("body must be an Account Activity object")
    own_id = x_id(body, "for_user_id", "")
    if user_id and own_id != user_id:
        return []  # another account subscribed to the same app's webhook
    users = optional(body, "users", dict, {})
    blocked = "true" in (str(body.get("user_has_blocked")).lower(), str(body.get("is_blocked_by")).lower())
    messages = []
    for index, post in enumerate(optional(body, "tweet_create_events", list, [])):
        message = activity_post(post, own_id, f"tweet_create_events[{index}]")
        if message and not blocked:
            messages.append(message)
    for index, event in enumerate(optional(body, "direct_message_events", list, [])):
        message = activity_dm(event, users, own_id, f"direct_message_events[{index}]")
        if message:
            messages.append(message)
    return messages


def activity_post(post: Any, own_id: str, where: str) -> InboundMessage | None:
    """A v1.1 post (Account Activity API) as a message. It has no conversation_id: a reply joins
    its parent's conversation when the parent is stored, else starts its own."""
    if not isinstance(post, dict):
        raise PayloadInvalid(f"{where} must be an object")
    post_id = x_id(post, "id_str", where)
    user = require(post, "user", dict, where)
    author_id = x_id(user, "id_str", f"{where}.user")
    extended = optional(post, "extended_tweet", dict, {}, where)
    text = (optional(extended, "full_text", str, "", f"{where}.extended_tweet")
            or optional(post, "full_text", str, "", where) or require(post, "text", str, where))
    sent_at = _v1_time(post, where)
    parent = x_id(post, "in_reply_to_status_id_str", where) if post.get("in_reply_to_status_id_str") else ""
    text = plain_text(text)
    if post.get("retweeted_status") is not None or author_id == own_id or not text.strip():
        return None
    author = _v1_author(author_id, user, f"{where}.user")
    return InboundMessage(
        external_id=post_id, text=clean_text(text), author=author, sent_at=sent_at, channel=CHANNEL,
        parent_external_id=parent, url=post_url(author.handle, post_id),
        raw={"for_user_id": own_id, "tweet_create_event": post},
    )


def activity_dm(event: Any, users: dict[str, Any], own_id: str, where: str) -> InboundMessage | None:
    """A message_create event as a message of the conversation with the other participant."""
    if require(event, "type", str, where) != "message_create":
        return None
    event_id = x_id(event, "id", where)
    create = require(event, "message_create", dict, where)
    sender = x_id(create, "sender_id", f"{where}.message_create")
    recipient = x_id(require(create, "target", dict, f"{where}.message_create"), "recipient_id",
                     f"{where}.message_create.target")
    data = require(create, "message_data", dict, f"{where}.message_create")
    text = plain_text(optional(data, "text", str, "", f"{where}.message_create.message_data"))
    if optional(data, "attachment", dict, {}, f"{where}.message_create.message_data"):
        text = f"{text} [media]".strip()
    sent_at = from_unix(_digits(event, "created_timestamp", where), f"{where}.created_timestamp")
    if sender == own_id or own_id not in (sender, recipient) or not text.strip():
        return None  # a DM we sent (from CXM or the X app) is not customer words
    user = users.get(sender) if isinstance(users.get(sender), dict) else {}
    return InboundMessage(
        external_id=f"dm:{event_id}", text=clean_text(text), author=_v1_author(sender, user, f"users.{sender}"),
        sent_at=sent_at, channel=DM_CHANNEL, thread_id=f"dm:{sender}",
        raw={"for_user_id": own_id, "direct_message_event": event, "user": user},
    )


def _v1_time(post: dict[str, Any], where: str) -> datetime:
    if post.get("timestamp_ms") is not None:
        return from_unix(_digits(post, "timestamp_ms", where), f"{where}.timestamp_ms")
    try:
        stated = require(post, "created_at", str, where)
        return times.source_time(datetime.strptime(stated, V1_DATE), stated)
    except ValueError:
        raise PayloadInvalid(f"field {where}.created_at must be a date like Wed Oct 10 20:19:24 +0000 2018") from None


def _v1_author(author_id: str, user: dict[str, Any], where: str) -> InboundAuthor:
    return _author(author_id, optional(user, "screen_name", str, "", where), optional(user, "name", str, "", where),
                   user.get("followers_count"))


# --- Shared ----------------------------------------------------------------------------------------
def _author(author_id: str, username: str, name: str, followers: Any) -> InboundAuthor:
    handle = username if USERNAME_RE.fullmatch(username) else ""
    return InboundAuthor(
        external_id=author_id, handle=handle, display_name=clean_text(name, 200),
        profile_url=f"https://x.com/{handle}" if handle else "",
        followers=followers if isinstance(followers, int) and not isinstance(followers, bool)
        and 0 <= followers < 2**62 else None,
    )


def post_url(handle: str, post_id: str) -> str:
    return f"https://x.com/{handle or 'i/web'}/status/{post_id}"


def plain_text(text: str) -> str:
    """X escapes &, < and > in post and DM text; the console escapes text itself."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def x_id(obj: Any, key: str, where: str) -> str:
    """An id field: X sends ids as decimal strings (numbers lose digits in JSON readers)."""
    value = require(obj, key, str, where)
    if not ID_RE.fullmatch(value):
        raise PayloadInvalid(f"field {f'{where}.{key}' if where else key} is not an X id")
    return value


def _digits(obj: Any, key: str, where: str) -> str:
    value = require(obj, key, str, where)
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        raise PayloadInvalid(f"field {where}.{key} must be milliseconds since 1970")
    return value


def snowflake_time(post_id: str) -> datetime:
    """When X minted an id (its top 41 bits are milliseconds since X's epoch)."""
    return datetime.fromtimestamp(((int(post_id) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000, tz=UTC)


# --- Weighted length -------------------------------------------------------------------------------
# A link, less trailing punctuation (X counts a sentence's final "." apart from the link).
URL_RE = re.compile(r"https?://[^\s]*[^\s.,;:!?)\]'\"]", re.IGNORECASE)
URL_WEIGHT = 23  # every link is shortened to a t.co link of 23 characters
LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))  # Latin, Greek, Cyrillic...: 1
ZWJ, VARIATION_SELECTORS, SKIN_TONES = "\u200d", ("\ufe0e", "\ufe0f"), range(0x1F3FB, 0x1F400)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)


def weighted_length(text: str) -> int:
    """The length X counts against 280 (twitter-text v3): NFC text, a URL is 23, a character in
    the light ranges 1, any other (CJK, emoji...) 2. An emoji joined by ZWJ, a skin tone or a
    variation selector counts once, and a flag (two regional indicators) as 2: X's own count of
    rarer sequences (keycaps) may be lower, never higher."""
    text = unicodedata.normalize("NFC", text)
    links = len(URL_RE.findall(text))
    total, joined, flag_half = 0, False, False
    for char in URL_RE.sub("", text):
        point = ord(char)
        if char == ZWJ:
            joined = True
        elif char in VARIATION_SELECTORS or point in SKIN_TONES or joined:
            joined = False  # part of the emoji before it
        elif point in REGIONAL_INDICATORS and flag_half:
            flag_half = False  # the second half of a flag
        else:
            flag_half = point in REGIONAL_INDICATORS
            total += 1 if any(low <= point <= high for low, high in LIGHT_RANGES) else 2
    return total + URL_WEIGHT * links
