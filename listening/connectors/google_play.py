"""Google Play: the reviews of one app, polled from the Android Publisher API v3; replies as the
public developer reply under a review.

Setup: in Google Cloud, enable the "Google Play Android Developer API", create a service account
and a JSON key for it. In Play Console (Users and permissions), invite the service account's
email with the "Reply to reviews" permission for the app. Paste the whole JSON key as the
credential `service_account_json`, and set `package_name` (com.example.app).

Protocol: the OAuth 2 JWT bearer grant (RFC 7523): a JWT signed RS256 with the key's private_key
(iss = client_email, scope androidpublisher, aud = token_uri, an hour at most) is exchanged at the
key's token_uri for an access token (an hour). Then
GET {api_base}/androidpublisher/v3/applications/{package}/reviews?maxResults=100[&token=...]
answers {"reviews": [{"reviewId", "authorName", "comments": [{"userComment": {...}},
{"developerComment": {...}}]}], "tokenPagination": {"nextPageToken"}}, and
POST .../reviews/{reviewId}:reply {"replyText"} answers {"result": {"replyText", "lastEdited"}}.
Errors are {"error": {"code", "message", "status"}}; a 401 means the token lapsed: it is fetched
again once, then the 401 is an auth error.

Limits (Google's): the API returns only reviews created or modified in the last 7 days, only
those with text, and only for the production track; older reviews come from Play Console's
review reports (import them as CSV). 200 list calls an hour and 2,000 replies a day per app:
poll every 5 minutes or more. A reply is at most 350 characters (HTML stripped by Google), and a
review has one developer reply: a new one replaces the previous one.

Conventions:
- a conversation per review (its reviewId). Each version of the customer's comment is a message
  `<reviewId>:<lastModified seconds>`: an edited review is a new message in the same
  conversation, and the same version polled again is the same id, stored once.
- the text starts with the rating ("★★☆☆☆ (2/5)"); rating, language, device, Android and app
  version stay in the raw payload (the userComment as Google sent it).
- the author is `reviewer:<reviewId>` (see appreviews.reviewer): Google gives no user id.
- a developer reply already on the review (ours, or written in Play Console) is stored as an
  outbound message `<reviewId>:reply:<lastModified seconds>`, the id send() returns for the reply
  it posts, so the conversation shows what the customer already read and our own reply is stored
  once. A reply edited in Play Console is a new outbound message.
- every poll walks the whole week (Google offers no "since"), page by page (`more`); the cursor
  keeps the page token while walking, and per review the versions already handed over, for 8 days.
- no backfill: the first poll already fetches everything the API can give.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from listening import http, times
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
from listening.connectors.payload import optional, require
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

API = "https://androidpublisher.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600  # the longest-lived assertion Google accepts
PACKAGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,2}")
REVIEW_ID_RE = re.compile(r"[A-Za-z0-9:_-]{1,200}")  # "gp:AOqpTOF..."; never "/" or "." in a path
BASE_RE = re.compile(r"https?://[^/\s]+/?")
MAX_REPLY_CHARS = 350
REMEMBER_SECONDS = 8 * 86400  # a day beyond the API's week
MAX_REMEMBERED = 2000  # the cursor is rewritten every page: past this, ingest dedupes
MAX_PAGE_TOKEN = 1000
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")

_tokens = TokenCache()


class GooglePlayAuthError(ProviderAuthError):
    """The service-account key is missing, malformed, or refused by Google's token endpoint:
    certain, and only an admin can fix it, so a reply fails at once instead of retrying."""

    retryable = False


class GooglePlayConnector(BaseConnector):
    kind = "google_play"
    label = "Google Play"
    channel = "google_play"
    description = "Google Play reviews of one app, polled; replies as the public developer reply."
    icon = icons.PLAY
    colour = "#01875f"
    channels = (Channel("google_play", "Google Play"),)
    polls = True
    # A reply replaces the review's developer reply: sending the same text again changes nothing.
    idempotent_sends = True
    config_defaults = {"package_name": "", "translation_language": "", "page_size": 100, "api_base": API}
    credential_fields = ("service_account_json",)
    required_credentials = ("service_account_json",)
    config_help = {
        "package_name": "The app's package name, as in its Play Store URL: com.example.app.",
        "translation_language": "Optional: a language code (en, pt_BR) to have Google translate reviews; "
                                "the original text stays in the raw payload.",
        "page_size": "Reviews per call, 1 to 100.",
        "api_base": f"Leave as {API} (tests point it at a local fake).",
    }
    credential_help = {
        "service_account_json": "The whole JSON key of a Google Cloud service account (type service_account) "
                                "invited in Play Console with the \"Reply to reviews\" permission. Google's API "
                                "shows only reviews written or edited in the last 7 days.",
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        package = config["package_name"]
        if not isinstance(package, str) or len(package) > 255 or not PACKAGE_RE.fullmatch(package):
            raise ConfigInvalid("package_name must be an Android package name like com.example.app")
        language = config["translation_language"]
        if not isinstance(language, str) or (language and not LANGUAGE_RE.fullmatch(language)):
            raise ConfigInvalid("translation_language must be empty or a language code like en or pt_BR")
        size = config["page_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise ConfigInvalid("page_size must be an integer from 1 to 100")
        if not isinstance(config["api_base"], str) or not BASE_RE.fullmatch(config["api_base"]):
            raise ConfigInvalid(f"api_base must be an http(s) URL with no path, like {API}")
        return config

    # --- Polling -------------------------------------------------------------------------------
    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """One page of the week's reviews: what changed since it was last handed over."""
        config = self.validate_config(dict(self.row.config or {}))
        seen = _seen(cursor.get("seen"))
        page_token = cursor.get("page_token") if isinstance(cursor.get("page_token"), str) else ""
        try:
            reviews, next_token = self._list(config, page_token)
        except ProviderRejected:
            if not page_token:
                raise
            # A page token Google no longer accepts must not stop the connector: start over.
            logger.info("google_play connector %s: page token refused, walking from the top", self.row.pk)
            reviews, next_token = self._list(config, "")
        messages = [m for review in reviews for m in self._review_messages(review, seen, config)]
        if next_token:
            return PollResult(messages, {"seen": seen, "page_token": next_token}, more=True)
        return PollResult(messages, {"seen": _pruned(seen)})

    def _list(self, config: dict[str, Any], page_token: str) -> tuple[list[dict[str, Any]], str]:
        params: dict[str, Any] = {"maxResults": config["page_size"]}
        if page_token:
            params["token"] = page_token
        if config["translation_language"]:
            params["translationLanguage"] = config["translation_language"]
        body = http.json_or_none(self._api("GET", _reviews_path(config), params=params))
        try:
            if not isinstance(body, dict):
                raise PayloadInvalid("body must be an object")
            reviews = optional(body, "reviews", list, [])  # Google leaves out an empty list
            for index, review in enumerate(reviews):
                if not isinstance(review, dict):
                    raise PayloadInvalid(f"field reviews[{index}] must be an object")
            paging = optional(body, "tokenPagination", dict, {})
            next_token = optional(paging, "nextPageToken", str, "", "tokenPagination")
            if len(next_token) > MAX_PAGE_TOKEN:
                raise PayloadInvalid("field tokenPagination.nextPageToken is too long")
        except PayloadInvalid as exc:
            raise PayloadInvalid(f"Google Play answered a malformed reviews page: {exc.reason}") from None
        return reviews, next_token

    def _review_messages(self, review: dict[str, Any], seen: dict[str, list[int]],
                         config: dict[str, Any]) -> list[InboundMessage]:
        """The versions of one review not handed over yet; an odd review is skipped and logged,
        so it cannot stop the rest of the app's reviews."""
        try:
            user, reply = _review(review, config["package_name"])
        except PayloadInvalid as exc:
            logger.warning("google_play connector %s: skipped a review: %s", self.row.pk, exc)
            return []
        review_id = user.thread_id if user else reply.thread_id  # type: ignore[union-attr]
        marks = seen.setdefault(review_id, [0, 0])
        fresh = []
        for index, message in enumerate((user, reply)):
            version = _version(message)
            if message is not None and version > marks[index]:
                marks[index] = version
                fresh.append(message)
        return fresh

    # --- Backfill, check -----------------------------------------------------------------------
    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("Google Play's API returns only reviews written or edited in the last 7 days, and "
                           "the first poll already fetches all of them. For older reviews, download the "
                           "reviews report from Play Console and import it as CSV.")

    def check_connection(self) -> str:
        config = self.validate_config(dict(self.row.config or {}))
        try:
            reviews, next_token = self._list(config, "")
        except PayloadInvalid as exc:  # the connect form expects a ProviderError for "it failed"
            raise ProviderUnavailable(exc.reason) from None
        count = f"{len(reviews)}{'+' if next_token else ''}"
        return (f"Reached {config['package_name']}: {count} review(s) in the last week (Google shows only reviews "
                "written or edited in the last 7 days; none stored by this test).")

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        return ReplyRules(max_chars=MAX_REPLY_CHARS, media=False,
                          when_closed="A review has one public developer reply: a new reply replaces the previous "
                                      "one.")

    def send(self, reply: OutboundReply) -> str:
        """Set the review's developer reply; return `<reviewId>:reply:<lastEdited seconds>`."""
        review_id = reply.thread_id
        check_reply("Google Play", "reply", review_id, reply.text, MAX_REPLY_CHARS, REVIEW_ID_RE)
        config = self.validate_config(dict(self.row.config or {}))
        path = f"{_reviews_path(config)}/{quote(review_id, safe=':')}:reply"
        body = http.json_or_none(self._api("POST", path, json={"replyText": reply.text}))
        result = body.get("result") if isinstance(body, dict) else None
        try:
            seconds, _ = _timestamp(result.get("lastEdited") if isinstance(result, dict) else None, "result.lastEdited")
        except PayloadInvalid:
            # The reply is up (2xx); only its time is unknown. Ours stands in for it.
            logger.warning("google_play connector %s: reply answered without result.lastEdited", self.row.pk)
            seconds = int(time.time())
        return f"{review_id}:reply:{seconds}"

    # --- OAuth ---------------------------------------------------------------------------------
    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a lapsed token (401) is fetched again once."""
        url = f"{str(self.config['api_base']).rstrip('/')}{path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token(fresh=attempt == 2)}"}
            try:
                return http.request(method, url, headers=headers, error_mapper=_status_error, **kwargs)
            except ProviderAuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _token(self, *, fresh: bool = False) -> str:
        account = self._service_account()
        key = fingerprint(*(account[name] for name in SERVICE_ACCOUNT_FIELDS))
        cached = None if fresh else _tokens.get(key)
        if cached:
            return cached
        token, lifetime = self._fetch_token(account)
        _tokens.put(key, token, lifetime)
        return token

    def _fetch_token(self, account: dict[str, str]) -> tuple[str, float]:
        now = int(time.time())
        claims = {"iss": account["client_email"], "scope": SCOPE, "aud": account["token_uri"],
                  "iat": now, "exp": now + ASSERTION_SECONDS}
        headers = {"kid": account["private_key_id"]} if account.get("private_key_id") else None
        assertion = jwt.encode(claims, _rsa_key(account["private_key"]), algorithm="RS256", headers=headers)
        response = http.request("POST", account["token_uri"], data={"grant_type": JWT_GRANT, "assertion": assertion},
                                error_mapper=_token_error)
        body = http.json_or_none(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise GooglePlayAuthError("Google's token endpoint answered without an access_token",
                                      status=response.status_code)
        expires_in = body.get("expires_in")
        usable = isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0
        return token, float(expires_in) if usable else 3600.0

    def _service_account(self) -> dict[str, str]:
        return parse_service_account(self.credentials.get("service_account_json"))


def parse_service_account(value: Any) -> dict[str, str]:
    """The fields of a service-account JSON key (pasted as text, or already an object), or a
    GooglePlayAuthError naming what is wrong, never quoting the key."""
    if not value:
        raise GooglePlayAuthError("this connector has no service_account_json configured")
    info = value
    if isinstance(value, str):
        try:
            info = json.loads(value)
        except ValueError:
            raise GooglePlayAuthError("service_account_json is not valid JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise GooglePlayAuthError("service_account_json is not a service-account key (its type must be "
                                  "service_account)")
    for name in SERVICE_ACCOUNT_FIELDS:
        if not isinstance(info.get(name), str) or not info[name].strip():
            raise GooglePlayAuthError(f"service_account_json has no {name}")
    if not info["token_uri"].startswith(("https://", "http://")):
        raise GooglePlayAuthError("service_account_json's token_uri must be an http(s) URL")
    account = {name: info[name] for name in SERVICE_ACCOUNT_FIELDS}
    if isinstance(info.get("private_key_id"), str):
        account["private_key_id"] = info["private_key_id"]
    return account


def _rsa_key(pem: str) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, RSAPrivateKey):
        raise GooglePlayAuthError("service_account_json's private_key is not a PEM RSA private key")
    return key


def _reviews_path(config: dict[str, Any]) -> str:
    return f"/androidpublisher/v3/applications/{config['package_name']}/reviews"


# --- Errors --------------------------------------------------------------------------------------
def _status_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Google's {"error": {"code", "message", "status"}}, with its message as the reason."""
    body = http.json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return http.status_error(response, safe_url)
    status = clean_text(error.get("status"), 60)
    message = clean_text(error.get("message"), 300)
    reason = f"Google Play answered {response.status_code}" + (f" {status}" if status else "") + f": {message}"
    return http.status_error(response, safe_url, reason)


def _token_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """The token endpoint's {"error": "invalid_grant", "error_description": ...} (a wrong or
    deleted key, a clock far off) is certain; its 429 and 5xx are worth retrying."""
    body = http.json_or_none(response)
    if response.status_code in (400, 401, 403) and isinstance(body, dict):
        error = clean_text(body.get("error"), 60)
        detail = clean_text(body.get("error_description"), 200)
        return GooglePlayAuthError(f"Google refused the service account's key: {error}" + (f": {detail}" if detail
                                                                                           else ""),
                                   status=response.status_code)
    return http.status_error(response, safe_url)


# --- Inbound payloads ----------------------------------------------------------------------------
def _review(review: dict[str, Any], package: str) -> tuple[InboundMessage | None, InboundMessage | None]:
    """The customer's comment and the developer reply of one review, as messages."""
    review_id = require(review, "reviewId", str, "review")
    if not REVIEW_ID_RE.fullmatch(review_id):
        raise PayloadInvalid("field review.reviewId is not a review id")
    where = f"review {review_id[:60]}"
    name = optional(review, "authorName", str, "", where)
    user = reply = None
    for index, comment in enumerate(require(review, "comments", list, where)):
        path = f"{where}.comments[{index}]"
        if not isinstance(comment, dict):
            raise PayloadInvalid(f"field {path} must be an object")
        if isinstance(comment.get("userComment"), dict):
            user = _user_comment(comment["userComment"], review_id, name, package, f"{path}.userComment")
        elif isinstance(comment.get("developerComment"), dict):
            reply = _developer_comment(comment["developerComment"], review_id, package, f"{path}.developerComment")
    if user is None and reply is None:
        raise PayloadInvalid(f"{where} has no userComment")
    if reply is not None and user is not None and user.sent_at <= reply.sent_at:
        reply = replace(reply, parent_external_id=user.external_id)  # it answers this version
    return user, reply


def _user_comment(comment: dict[str, Any], review_id: str, name: str, package: str, where: str) -> InboundMessage:
    seconds, sent_at = _timestamp(comment.get("lastModified"), f"{where}.lastModified")
    rating = rating_of(comment.get("starRating"), f"{where}.starRating")
    words = optional(comment, "text", str, "", where).strip()
    return InboundMessage(
        external_id=f"{review_id}:{seconds}",
        text=f"{stars(rating)}\n\n{words}" if words else stars(rating),
        author=reviewer(review_id, name),
        sent_at=sent_at,
        channel=GooglePlayConnector.channel,
        thread_id=review_id,
        subject=f"{stars(rating)} review of {package}",
        url=f"https://play.google.com/store/apps/details?id={package}&reviewId={quote(review_id, safe='')}",
        raw={"reviewId": review_id, "authorName": name, "userComment": comment},
    )


def _developer_comment(comment: dict[str, Any], review_id: str, package: str, where: str) -> InboundMessage:
    seconds, sent_at = _timestamp(comment.get("lastModified"), f"{where}.lastModified")
    return InboundMessage(
        external_id=f"{review_id}:reply:{seconds}",
        text=optional(comment, "text", str, "", where),
        author=InboundAuthor(external_id=f"developer:{package}", handle=package,
                             display_name=f"{package} (developer reply)"),
        sent_at=sent_at,
        channel=GooglePlayConnector.channel,
        thread_id=review_id,
        direction="out",
        raw={"reviewId": review_id, "developerComment": comment},
    )


def _timestamp(value: Any, where: str) -> tuple[int, datetime]:
    """Google's Timestamp {"seconds": "1700000000", "nanos": 5} (int64 seconds come as a string)."""
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds < 10**11:
        raise PayloadInvalid(f"field {where}.seconds must be Unix seconds")
    nanos = value.get("nanos")
    micros = nanos // 1000 if isinstance(nanos, int) and not isinstance(nanos, bool) and 0 <= nanos < 10**9 else 0
    return seconds, times.source_time(datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros), seconds)


def _version(message: InboundMessage | None) -> int:
    return int(message.sent_at.timestamp()) if message is not None else 0


# --- Cursor --------------------------------------------------------------------------------------
def _seen(value: Any) -> dict[str, list[int]]:
    """Per review, the lastModified seconds of the comment and of the reply handed over."""
    if not isinstance(value, dict):
        return {}
    return {k: [int(v[0]), int(v[1])] for k, v in value.items()
            if isinstance(k, str) and isinstance(v, list) and len(v) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in v)}


def _pruned(seen: dict[str, list[int]]) -> dict[str, list[int]]:
    """Forget reviews the API can no longer return (older than REMEMBER_SECONDS), newest kept."""
    floor = time.time() - REMEMBER_SECONDS
    recent = sorted(((max(marks), review_id) for review_id, marks in seen.items() if max(marks) > floor),
                    reverse=True)
    return {review_id: seen[review_id] for _, review_id in recent[:MAX_REMEMBERED]}
