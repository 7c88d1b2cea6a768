"""Apple App Store: the customer reviews of one app, polled from the App Store Connect API;
replies as the app's public response to a review.

Setup: in App Store Connect, Users and Access > Integrations > App Store Connect API, generate a
team key with a role that may answer reviews (Customer Support, App Manager or Admin) and
download its .p8 file (offered once). Credentials: `key_id`, `issuer_id` (shown above the keys)
and `private_key` (the .p8 file's text). Config: `app_id`, the app's Apple ID (digits, under App
Information).

Protocol: every call carries a JWT signed ES256 with the key: header kid = key_id, payload
iss = issuer_id, aud "appstoreconnect-v1", iat and exp (Apple refuses an exp more than 20 minutes
ahead: we sign for 19 and reuse the token until a minute before). Then
GET {api_base}/v1/apps/{app_id}/customerReviews?sort=-createdDate&limit=200&include=response
answers JSON:API: {"data": [{"type": "customerReviews", "id", "attributes": {"rating", "title",
"body", "reviewerNickname", "createdDate", "territory"}, "relationships": {"response": {"data":
{"type", "id"} | null}}}], "included": [{"type": "customerReviewResponses", "id", "attributes":
{"responseBody", "lastModifiedDate", "state"}}], "links": {"next"}}, and
POST {api_base}/v1/customerReviewResponses creates the review's response, or replaces the one it
has, and answers 201 with it. Errors are {"errors": [{"status", "code", "title", "detail"}]};
Apple's detail is the reason we keep. Every answer's `X-Rate-Limit: user-hour-lim:3600;
user-hour-rem:3545;` is noted as the connector's headroom.

Limits (Apple's): 3,600 calls per rolling hour per key; a response is at most 5,970 characters,
shows on the App Store once Apple has reviewed it (state PENDING_PUBLISH, then PUBLISHED), and a
review has one response: a new one replaces it.

Conventions:
- a conversation per review (its id); the subject is the review's title, the text starts with
  the rating ("★★☆☆☆ (2/5) Title"); territory and the whole resource stay in the raw payload.
- the author is `reviewer:<review id>` (see appreviews.reviewer): Apple gives only a nickname.
- the API has no "since" filter: a poll walks newest first and stops at the high-water mark, the
  newest createdDate handed over plus the ids seen at that instant (reviews of the same second).
  A walk of several pages goes page by page (`more`), carrying its next link and the mark it will
  set in the cursor until it meets the old mark. The first poll takes `first_poll_pages` pages;
  older reviews come through backfill, which walks back to a date.
- a response already on a review (written in App Store Connect, or ours met again by a backfill)
  is an outbound message `<response id>@<lastModifiedDate>`, the id send() returns: a replaced
  response is a new message, and ours is stored once.
- links.next is followed only under api_base: the bearer token never goes anywhere else.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey

from listening import http
from listening.connectors import icons
from listening.connectors.appreviews import TokenCache, check_reply, fingerprint, rating_of, reviewer, stars
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundAuthor,
    InboundMessage,
    OutboundReply,
    PollResult,
    ReplyRules,
)
from listening.connectors.payload import from_iso, optional, require
from listening.exceptions import (
    ConfigInvalid,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

API = "https://api.appstoreconnect.apple.com"
AUDIENCE = "appstoreconnect-v1"
TOKEN_SECONDS = 19 * 60  # Apple refuses tokens that expire more than 20 minutes ahead
APP_ID_RE = re.compile(r"[0-9]{1,20}")
REVIEW_ID_RE = re.compile(r"[A-Za-z0-9-]{1,100}")  # "00000028-b08c-0014-729e-fbd500000000"
KEY_ID_RE = re.compile(r"[A-Za-z0-9]{1,64}")
ISSUER_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
BASE_RE = re.compile(r"https?://[^/\s]+/?")
RATE_LIMIT_RE = re.compile(r"user-hour-(lim|rem):(\d+)")
MAX_RESPONSE_CHARS = 5970
MAX_WALK_PAGES = 50
MAX_NEXT_LINK = 2000

_tokens = TokenCache()


class AppStoreAuthError(ProviderAuthError):
    """The API key is missing or malformed: only an admin can fix it, so nothing is retried."""

    retryable = False


@dataclass(frozen=True)
class _Review:
    id: str
    created: datetime
    messages: list[InboundMessage]


@dataclass(frozen=True)
class _Page:
    reviews: list[_Review]
    next: str


class AppStoreConnector(BaseConnector):
    kind = "app_store"
    label = "App Store"
    channel = "app_store"
    description = "Apple App Store reviews of one app, polled; replies as the app's public response."
    icon = icons.A_MARK
    colour = "#1d7fe0"
    channels = (Channel("app_store", "App Store"),)
    polls = True
    supports_backfill = True
    # A review has one response, and a new one replaces it: sending the same text again is harmless.
    idempotent_sends = True
    config_defaults = {"app_id": "", "first_poll_pages": 1, "page_size": 200, "api_base": API}
    credential_fields = ("key_id", "issuer_id", "private_key")
    required_credentials = ("key_id", "issuer_id", "private_key")
    config_help = {
        "app_id": "The app's Apple ID: digits, under App Information in App Store Connect.",
        "first_poll_pages": "Pages of newest reviews the first poll takes (1 to 50); use backfill for older ones.",
        "page_size": "Reviews per call, 1 to 200.",
        "api_base": f"Leave as {API} (tests point it at a local fake).",
    }
    credential_help = {
        "key_id": "The App Store Connect API key's ID (Users and Access > Integrations), e.g. 2X9R4HXF34.",
        "issuer_id": "The issuer ID shown above the list of keys (a UUID).",
        "private_key": "The text of the key's .p8 file, from -----BEGIN PRIVATE KEY----- to the END line. Give "
                       "the key a role that may answer reviews (Customer Support, App Manager or Admin).",
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        if not isinstance(config["app_id"], str) or not APP_ID_RE.fullmatch(config["app_id"]):
            raise ConfigInvalid("app_id must be the app's Apple ID (digits), as a string")
        for key, most in (("first_poll_pages", MAX_WALK_PAGES), ("page_size", 200)):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise ConfigInvalid(f"{key} must be an integer from 1 to {most}")
        if not isinstance(config["api_base"], str) or not BASE_RE.fullmatch(config["api_base"]):
            raise ConfigInvalid(f"api_base must be an http(s) URL with no path, like {API}")
        return config

    # --- Polling -------------------------------------------------------------------------------
    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """One page of the newest-first walk, down to the high-water mark."""
        config = self.validate_config(dict(self.row.config or {}))
        mark, mark_ids = _mark(cursor)
        walk = _walk(cursor.get("walk"), self._base()) or {
            "next": self._first_url(config), "top": None, "top_ids": [], "pages": 0}
        page = self._page(walk["next"])
        fresh, reached, top, top_ids = _above_mark(page.reviews, mark, mark_ids, walk["top"], walk["top_ids"])
        messages = [m for review in fresh for m in review.messages]
        pages = walk["pages"] + 1
        first_poll_done = mark is None and pages >= config["first_poll_pages"]
        if page.next and not reached and not first_poll_done and pages < MAX_WALK_PAGES:
            state = {"next": page.next, "top": _iso(top), "top_ids": top_ids, "pages": pages}
            return PollResult(messages, {**_mark_state(mark, mark_ids), "walk": state}, more=True)
        if page.next and not reached and mark is not None:
            logger.warning("app_store connector %s: stopped after %d pages without meeting the last mark; "
                           "backfill to fetch what lies between", self.row.pk, pages)
        return PollResult(messages, _next_mark(mark, mark_ids, top, top_ids))

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """One page walking back from the newest review, until reviews are older than `since`."""
        config = self.validate_config(dict(self.row.config or {}))
        next_url = state.get("next") if isinstance(state.get("next"), str) else ""
        page = self._page(next_url if _under(next_url, self._base()) else self._first_url(config))
        kept = [review for review in page.reviews if review.created >= since]
        messages = [m for review in kept for m in review.messages]
        if len(kept) < len(page.reviews) or not page.next:
            return PollResult(messages, {})
        return PollResult(messages, {"next": page.next}, more=True)

    def _first_url(self, config: dict[str, Any]) -> str:
        return (f"{self._base()}/v1/apps/{config['app_id']}/customerReviews"
                f"?sort=-createdDate&limit={config['page_size']}&include=response")

    def _page(self, url: str) -> _Page:
        body = http.json_or_none(self._api("GET", url))
        try:
            if not isinstance(body, dict):
                raise PayloadInvalid("body must be an object")
            data = require(body, "data", list)
            responses = _included_responses(optional(body, "included", list, []))
            reviews = [review for index, item in enumerate(data)
                       if (review := self._review(item, f"data[{index}]", responses)) is not None]
            next_url = optional(optional(body, "links", dict, {}), "next", str, "", "links")
            if next_url and (len(next_url) > MAX_NEXT_LINK or not _under(next_url, self._base())):
                raise PayloadInvalid("links.next points outside api_base")
        except PayloadInvalid as exc:
            raise PayloadInvalid(f"App Store Connect answered a malformed reviews page: {exc.reason}") from None
        return _Page(reviews, next_url)

    def _review(self, item: Any, where: str, responses: dict[str, dict[str, Any]]) -> _Review | None:
        """One review and its response as messages; an odd one is skipped and logged, so it cannot
        stop the app's other reviews."""
        try:
            return _review(item, where, responses, str(self.config["app_id"]))
        except PayloadInvalid as exc:
            logger.warning("app_store connector %s: skipped %s: %s", self.row.pk, where, exc)
            return None

    # --- Check ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        config = self.validate_config(dict(self.row.config or {}))
        body = http.json_or_none(self._api("GET", f"{self._base()}/v1/apps/{config['app_id']}"
                                                  "?fields[apps]=name,bundleId"))
        data = body.get("data") if isinstance(body, dict) else None
        attributes = data.get("attributes") if isinstance(data, dict) else None
        if not isinstance(attributes, dict):
            raise ProviderUnavailable("App Store Connect answered /v1/apps without the app's attributes")
        name = clean_text(attributes.get("name"), 120) or config["app_id"]
        bundle = clean_text(attributes.get("bundleId"), 120)
        return f"Reached {name}" + (f" ({bundle})" if bundle else "") + " on App Store Connect."

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        return ReplyRules(max_chars=MAX_RESPONSE_CHARS, media=False,
                          when_closed="A review has one public response: a new reply replaces the previous one, and "
                                      "Apple publishes it after a review.")

    def send(self, reply: OutboundReply) -> str:
        """Create (or replace) the review's response; return `<response id>@<lastModifiedDate>`."""
        review_id = reply.thread_id
        check_reply("App Store", "response", review_id, reply.text, MAX_RESPONSE_CHARS, REVIEW_ID_RE)
        payload = {"data": {
            "type": "customerReviewResponses",
            "attributes": {"responseBody": reply.text},
            "relationships": {"review": {"data": {"type": "customerReviews", "id": review_id}}},
        }}
        body = http.json_or_none(self._api("POST", f"{self._base()}/v1/customerReviewResponses", json=payload))
        data = body.get("data") if isinstance(body, dict) else None
        response_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(response_id, str) or not REVIEW_ID_RE.fullmatch(response_id):
            # Sending again is safe (it replaces the response with the same text) and may tell us its id.
            raise ProviderUnavailable("App Store Connect answered without the response's id; the response may be "
                                      "up, and sending again replaces it with the same text")
        attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
        return _response_id(response_id, attributes.get("lastModifiedDate"))

    # --- Calls ---------------------------------------------------------------------------------
    def _base(self) -> str:
        return str(self.config["api_base"]).rstrip("/")

    def _api(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call with the signed token; a 401 signs a fresh token once (a clock that jumped)."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token(fresh=attempt == 2)}"}
            try:
                response = http.request(method, url, headers=headers, error_mapper=self._error, **kwargs)
            except ProviderAuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                continue
            self._note_headroom(response)
            return response
        raise AssertionError("unreachable")

    def _error(self, response: httpx.Response, safe_url: str) -> ProviderError:
        self._note_headroom(response)  # a 429 tells the headroom too
        return _status_error(response, safe_url)

    def _note_headroom(self, response: httpx.Response) -> None:
        found = dict(RATE_LIMIT_RE.findall(response.headers.get("x-rate-limit", "")))
        if "rem" in found:
            self.note_rate_limit(found["rem"], found.get("lim"))

    def _token(self, *, fresh: bool = False) -> str:
        key_id, issuer_id, pem = self._credential("key_id"), self._credential("issuer_id"), self._credential(
            "private_key")
        if not KEY_ID_RE.fullmatch(key_id) or not ISSUER_RE.fullmatch(issuer_id):
            raise AppStoreAuthError("key_id and issuer_id must be as App Store Connect shows them (letters, digits "
                                    "and dashes)")
        key = fingerprint(key_id, issuer_id, pem)
        cached = None if fresh else _tokens.get(key)
        if cached:
            return cached
        now = int(time.time())
        claims = {"iss": issuer_id, "iat": now, "exp": now + TOKEN_SECONDS, "aud": AUDIENCE}
        token = jwt.encode(claims, _ec_key(pem), algorithm="ES256", headers={"kid": key_id, "typ": "JWT"})
        _tokens.put(key, token, TOKEN_SECONDS)
        return token

    def _credential(self, name: str) -> str:
        value = self.credentials.get(name)
        if not isinstance(value, str) or not value.strip():
            raise AppStoreAuthError(f"this connector has no {name} configured")
        return value.strip()


def _ec_key(pem: str) -> EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
        raise AppStoreAuthError("private_key is not the text of an App Store Connect .p8 key (a PEM P-256 key)")
    return key


def _under(url: str, base: str) -> bool:
    return bool(url) and url.startswith(f"{base}/v1/")


# --- Errors --------------------------------------------------------------------------------------
def _status_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Apple's {"errors": [{"status", "code", "title", "detail"}]}, with the detail as the reason."""
    body = http.json_or_none(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else None
    if first is None:
        return http.status_error(response, safe_url)
    code = clean_text(first.get("code"), 80)
    detail = clean_text(first.get("detail") or first.get("title"), 300)
    reason = f"App Store Connect answered {response.status_code} {code}: {detail}"
    if response.status_code == 429:
        # The limit is per rolling hour and Apple sends no Retry-After: give it a minute at least.
        wait = http.retry_after_seconds(response.headers.get("retry-after"))
        return ProviderRateLimited(reason, retry_after=wait if wait is not None else 60.0, status=429)
    # 409 (ENTITY_ERROR, STATE_ERROR: an invalid body, a review that is gone) is a permanent refusal.
    return http.status_error(response, safe_url, reason)


# --- Inbound payloads ----------------------------------------------------------------------------
def _included_responses(included: list[Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in included
            if isinstance(item, dict) and item.get("type") == "customerReviewResponses"
            and isinstance(item.get("id"), str)}


def _review(item: Any, where: str, responses: dict[str, dict[str, Any]], app_id: str) -> _Review:
    if not isinstance(item, dict) or item.get("type") != "customerReviews":
        raise PayloadInvalid(f"{where} is not a customerReviews resource")
    review_id = require(item, "id", str, where)
    if not REVIEW_ID_RE.fullmatch(review_id):
        raise PayloadInvalid(f"field {where}.id is not a review id")
    attributes = require(item, "attributes", dict, where)
    at = f"{where}.attributes"
    created = from_iso(attributes.get("createdDate"), f"{at}.createdDate")
    rating = rating_of(attributes.get("rating"), f"{at}.rating")
    title = clean_text(optional(attributes, "title", str, "", at), 300).strip()
    words = optional(attributes, "body", str, "", at).strip()
    heading = f"{stars(rating)} {title}".strip()
    response = _response_of(item, responses, where)
    review = InboundMessage(
        external_id=review_id,
        text=f"{heading}\n\n{words}" if words else heading,
        author=reviewer(review_id, optional(attributes, "reviewerNickname", str, "", at)),
        sent_at=created,
        channel=AppStoreConnector.channel,
        thread_id=review_id,
        subject=title or stars(rating),
        url=f"https://apps.apple.com/app/id{app_id}?see-all=reviews",
        raw={**item, **({"response": response} if response else {})},
    )
    messages = [review]
    if response:
        messages.append(_response_message(response, review, app_id, f"{where}.response"))
    return _Review(review_id, created, messages)


def _response_of(item: dict[str, Any], responses: dict[str, dict[str, Any]], where: str) -> dict[str, Any] | None:
    relationships = optional(item, "relationships", dict, {}, where)
    related = optional(relationships, "response", dict, {}, f"{where}.relationships")
    data = related.get("data")
    if not isinstance(data, dict):
        return None  # null: no response yet (or the page was not fetched with include=response)
    return responses.get(data.get("id")) if isinstance(data.get("id"), str) else None


def _response_message(response: dict[str, Any], review: InboundMessage, app_id: str, where: str) -> InboundMessage:
    attributes = require(response, "attributes", dict, where)
    modified = attributes.get("lastModifiedDate")
    sent_at = from_iso(modified, f"{where}.lastModifiedDate") if modified is not None else review.sent_at
    return InboundMessage(
        external_id=_response_id(response["id"], modified),
        text=optional(attributes, "responseBody", str, "", f"{where}.attributes"),
        author=InboundAuthor(external_id=f"developer:{app_id}", display_name="App Store response"),
        sent_at=max(sent_at, review.sent_at),  # after the review it answers, even with a skewed clock
        channel=AppStoreConnector.channel,
        thread_id=review.thread_id,
        parent_external_id=review.external_id,
        direction="out",
        raw=response,
    )


def _response_id(response_id: str, modified: Any) -> str:
    """One id per version of a response: the same one from send() and from a later poll."""
    if isinstance(modified, str) and 0 < len(modified) <= 64 and clean_text(modified) == modified:
        return f"{response_id}@{modified}"
    return response_id


# --- Cursor --------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _parse(value: Any) -> datetime | None:
    try:
        return from_iso(value, "cursor") if value else None
    except PayloadInvalid:
        return None


def _mark(cursor: dict[str, Any]) -> tuple[datetime | None, list[str]]:
    ids = cursor.get("ids")
    return _parse(cursor.get("mark")), [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def _above_mark(reviews: list[_Review], mark: datetime | None, mark_ids: list[str], top: datetime | None,
                top_ids: list[str]) -> tuple[list[_Review], bool, datetime | None, list[str]]:
    """The reviews of a newest-first page not handed over yet, whether the page met the mark,
    and the walk's newest instant with its ids so far."""
    fresh, top_ids = [], list(top_ids)
    for review in reviews:
        if mark is not None and review.created < mark:
            return fresh, True, top, top_ids  # newest first: everything from here on was handed over
        if mark is not None and review.created == mark and review.id in mark_ids:
            continue  # the mark's second may also hold reviews we have not seen, in any order
        fresh.append(review)
        if top is None or review.created > top:
            top, top_ids = review.created, [review.id]
        elif review.created == top:
            top_ids.append(review.id)
    return fresh, False, top, top_ids


def _next_mark(mark: datetime | None, mark_ids: list[str], top: datetime | None, top_ids: list[str]) -> dict:
    if top is None:
        return _mark_state(mark, mark_ids)
    if top == mark:  # more reviews of the mark's very second
        top_ids = sorted(set(mark_ids) | set(top_ids))
    return _mark_state(top, top_ids)


def _mark_state(mark: datetime | None, ids: list[str]) -> dict[str, Any]:
    return {"mark": _iso(mark), "ids": ids} if mark is not None else {}


def _walk(value: Any, base: str) -> dict[str, Any] | None:
    """A walk in progress: its next link, the mark it will set, and its pages so far."""
    if not isinstance(value, dict) or not isinstance(value.get("next"), str) or not _under(value["next"], base):
        return None
    ids = value.get("top_ids")
    pages = value.get("pages")
    return {"next": value["next"], "top": _parse(value.get("top")),
            "top_ids": [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else [],
            "pages": pages if isinstance(pages, int) and not isinstance(pages, bool) and pages > 0 else 1}
