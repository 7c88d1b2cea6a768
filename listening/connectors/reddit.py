"""Reddit: subreddit searches and inbox mentions polled through OAuth; replies as comments.

Setup: create an app at https://www.reddit.com/prefs/apps. A "script" app (the care team's own
account) uses `client_id`, `client_secret`, `username` and `password`; an installed or web app
uses `client_id`, `client_secret` (empty for installed apps) and a permanent `refresh_token`.
Scopes: read (search), privatemessages (mentions), submit (comments), identity. A web app can
also be connected with Reddit's OAuth flow (`oauth`, duration=permanent): the token answer's
refresh_token is saved. "Test connection" calls /api/v1/me.

Protocol: a bearer token from POST <auth_base>/api/v1/access_token (HTTP basic auth with the
app's id and secret; it lasts an hour), then GET <api_base>/r/<a+b>/search and /message/mentions,
which answer Listings ({"kind": "Listing", "data": {"children": [{"kind": "t3"|"t1", ...}]}}).
Every call carries a descriptive User-Agent, as Reddit requires. A 401 means the token expired:
it is fetched again once, then the 401 is an auth error.

Conventions:
- a message is its fullname (t3_<id> a post, t1_<id> a comment); the thread is the submission's
  fullname, so a post and every mention under it are one conversation, comments parented by
  their parent_id. A mention that a search also finds is one fullname, stored once.
- authors are the lower-cased username (immutable on Reddit, and present in search results and
  inbox items alike, where author_fullname is not always).
- the cursor keeps, per source, a high-water mark of created_utc and the fullnames seen in the
  last LOOKBACK_SECONDS: Reddit's `before` paging is unreliable for search, and search indexing
  lags, so a late-indexed post a little older than the mark is still picked up once.
- the access token is never written to the cursor (stored in clear): it is cached in this
  process, keyed by the credentials, until a minute before it expires.
- backfill walks each source's listing back with `after` until an item was created before
  `since`; its state keeps each source's next `after`, or that it is done. Reddit listings end
  after about 1,000 items, so a busy search cannot reach further back than that.
- every API answer's X-Ratelimit-Used/Remaining/Reset (seconds until the window resets) is
  noted as the headroom; the limit is used + remaining.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.utils import timezone

from listening import http
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundAuthor,
    InboundMessage,
    OAuthSpec,
    OutboundReply,
    PollResult,
    ReplyRules,
)
from listening.connectors.payload import from_unix, optional, require
from listening.exceptions import (
    ConfigInvalid,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

WEB = "https://www.reddit.com"
FULLNAME_RE = re.compile(r"t[13]_[a-z0-9]{1,13}")
SUBREDDIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{1,20}")
USERNAME_RE = re.compile(r"[A-Za-z0-9_-]{3,20}")
BASE_RE = re.compile(r"https?://[^/\s]+/?")
CONTEXT_RE = re.compile(r"^/r/[^/]+/comments/([a-z0-9]{1,13})/")
RATELIMIT_RE = re.compile(r"(\d+)\s*(millisecond|second|minute|hour)", re.IGNORECASE)
UNIT_SECONDS = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600}
LOOKBACK_SECONDS = 3600
MAX_REMEMBERED = 500
MAX_PAGES_PER_SOURCE = 3
GONE_TEXT = frozenset({"", "[deleted]", "[removed]"})
# /api/comment errors that only an admin (not a retry) can fix.
AUTH_ERRORS = frozenset({"USER_REQUIRED", "INVALID_OPTION"})

_tokens: dict[str, tuple[str, float]] = {}  # credentials fingerprint -> (token, monotonic expiry)
_tokens_lock = threading.Lock()


class RedditAuthError(ProviderAuthError):
    """Reddit itself refused the app's credentials (invalid_grant, a wrong client secret): certain,
    so a reply fails at once with the reason instead of being retried against them."""

    retryable = False


class RedditConnector(BaseConnector):
    kind = "reddit"
    label = "Reddit"
    channel = "reddit"
    description = "Subreddit searches and mentions, polled; replies as comments."
    icon = icons.ALIEN
    colour = "#e0481b"
    channels = (Channel("reddit", "Reddit"),)
    polls = True
    config_defaults = {"subreddits": [], "queries": [], "mentions": True, "user_agent": "",
                       "page_size": 100, "api_base": "https://oauth.reddit.com", "auth_base": WEB}
    credential_fields = ("client_id", "client_secret", "username", "password", "refresh_token")
    config_help = {
        "subreddits": "Subreddits to search, without r/ (empty: all of Reddit).",
        "queries": "Search queries (Reddit search syntax), newest posts first; up to 20.",
        "mentions": "Whether to read the account's inbox mentions (u/<account> in a comment).",
        "user_agent": "The User-Agent Reddit asks for, like server:com.acme.cxm:0.1 (by /u/AcmeCare); empty "
                      "builds one from the username.",
        "page_size": "Items per listing page, 1 to 100.",
        "api_base": "Reddit's OAuth API host: keep https://oauth.reddit.com.",
        "auth_base": "Reddit's token and authorize host: keep https://www.reddit.com.",
    }
    credential_help = {
        "client_id": "reddit.com/prefs/apps › your app › the id under its name (14+ characters).",
        "client_secret": "reddit.com/prefs/apps › your app › secret (empty for an installed app).",
        "username": "Script apps: the Reddit account the app belongs to (listed as a developer of the app).",
        "password": "Script apps: that account's password (an account with two-factor login cannot use it).",
        "refresh_token": "Web or installed apps: a permanent refresh token; filled in by Connect with Reddit.",
    }
    # And either username + password (a script app) or refresh_token: check_connection says which is missing.
    required_credentials = ("client_id",)
    oauth = OAuthSpec(
        authorize_url="{auth_base}/api/v1/authorize", token_url="{auth_base}/api/v1/access_token",
        scopes=("identity", "read", "privatemessages", "submit"), client_auth="basic", pkce=False,
        extra_params=(("duration", "permanent"),),
    )
    supports_backfill = True

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        subs, queries = config["subreddits"], config["queries"]
        if not isinstance(subs, list) or not all(isinstance(s, str) and SUBREDDIT_RE.fullmatch(s) for s in subs):
            raise ConfigInvalid("subreddits must be a list of subreddit names like AskReddit (no r/)")
        if not isinstance(queries, list) or not all(isinstance(q, str) and 0 < len(q.strip()) <= 512 for q in queries):
            raise ConfigInvalid("queries must be a list of search queries of 1 to 512 characters")
        if len(set(queries)) != len(queries) or len(queries) > 20:
            raise ConfigInvalid("queries must be at most 20 distinct searches")
        if not isinstance(config["mentions"], bool):
            raise ConfigInvalid("mentions must be true or false")
        if not queries and not config["mentions"]:
            raise ConfigInvalid("give at least one query, or poll mentions")
        agent = config["user_agent"]
        if not isinstance(agent, str) or len(agent) > 256 or not all(" " <= c <= "~" for c in agent):
            raise ConfigInvalid("user_agent must be up to 256 printable ASCII characters")
        size = config["page_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise ConfigInvalid("page_size must be an integer from 1 to 100")
        for key in ("api_base", "auth_base"):
            if not isinstance(config[key], str) or not BASE_RE.fullmatch(config[key]):
                raise ConfigInvalid(f"{key} must be an http(s) URL with no path, like {cls.config_defaults[key]}")
        return config

    @classmethod
    def wants_polling(cls, config: dict[str, Any]) -> bool:
        return bool((config or {}).get("queries")) or (config or {}).get("mentions", True) is True

    # --- Polling -------------------------------------------------------------------------------
    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """Fetch each source's newest listing page (and older pages while all of it is new), and
        return what no source had seen, each fullname once."""
        config = self.validate_config(dict(self.row.config or {}))
        states = dict(cursor.get("sources") or {}) if isinstance(cursor.get("sources"), dict) else {}
        found: dict[str, InboundMessage] = {}
        for key, path, params in self._sources(config):
            messages, states[key] = self._poll_source(path, params, _state(states.get(key)))
            for message in messages:
                found.setdefault(message.external_id, message)
        ordered = sorted(found.values(), key=lambda m: m.sent_at)
        return PollResult(ordered, {**cursor, "sources": states})

    def _sources(self, config: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        subs = "+".join(config["subreddits"])
        common = {"limit": config["page_size"], "raw_json": 1}  # raw_json: no &amp; escaping
        sources = [
            (f"search:{subs}:{query}", f"/r/{subs}/search" if subs else "/search",
             {**common, "q": query, "sort": "new", "type": "link", **({"restrict_sr": 1} if subs else {})})
            for query in config["queries"]
        ]
        if config["mentions"]:
            sources.append(("mentions", "/message/mentions", {**common, "mark": "false"}))
        return sources

    def _poll_source(self, path: str, params: dict[str, Any], state: dict[str, Any]):
        mark, seen = state["created"], dict(state["seen"])
        floor = None if mark is None else mark - LOOKBACK_SECONDS
        new: list[InboundMessage] = []
        after = ""
        for _ in range(MAX_PAGES_PER_SOURCE):
            items, after = self._listing(path, {**params, **({"after": after} if after else {})})
            fresh = [item for item in items if item[0] not in seen and (floor is None or item[1] > floor)]
            for name, created, data, kind in fresh:
                seen[name] = created
                message = self._message(kind, data, name, created)
                if message:
                    new.append(message)
            # Only a page that was all new may hide more below it; a first poll backfills one page.
            if mark is None or not after or not items or len(fresh) < len(items):
                break
        return new, _remember(seen, new, state)

    def _listing(self, path: str, params: dict[str, Any]) -> tuple[list[tuple[str, float, dict, str]], str]:
        """One Listing page as (fullname, created_utc, data, kind) items and its `after`."""
        body = http.json_or_none(self._api("GET", path, params=params))
        try:
            if require(body, "kind", str) != "Listing":
                raise PayloadInvalid("kind must be Listing")
            data = require(body, "data", dict)
            children = require(data, "children", list, "data")
            items = []
            for index, child in enumerate(children):
                where = f"data.children[{index}]"
                kind = require(child, "kind", str, where)
                if kind not in ("t1", "t3"):
                    continue  # private messages (t4) and the like carry no public thread
                item = require(child, "data", dict, where)
                name = require(item, "name", str, f"{where}.data")
                if not FULLNAME_RE.fullmatch(name) or not name.startswith(kind):
                    raise PayloadInvalid(f"field {where}.data.name is not a {kind} fullname")
                created = item.get("created_utc")
                if not isinstance(created, int | float) or isinstance(created, bool) or not 0 < created < 1e11:
                    raise PayloadInvalid(f"field {where}.data.created_utc must be Unix seconds")
                items.append((name, float(created), item, kind))
            after = optional(data, "after", str, "", "data")
        except PayloadInvalid as exc:
            raise ProviderUnavailable(f"Reddit {path} answered a malformed Listing: {exc}") from None
        return items, after

    # --- Backfill ------------------------------------------------------------------------------
    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """One listing page further back from each source not yet walked down to `since`. State:
        {"sources": {"<source>": {"after": "<fullname>"} while walking, {"done": true} once there}}."""
        config = self.validate_config(dict(self.row.config or {}))
        walked_all = state.get("sources") if isinstance(state.get("sources"), dict) else {}
        floor = since.timestamp()
        found: dict[str, InboundMessage] = {}
        states: dict[str, Any] = {}
        for key, path, params in self._sources(config):
            walked = walked_all.get(key) if isinstance(walked_all.get(key), dict) else {}
            if walked.get("done") is True:
                states[key] = {"done": True}
                continue
            after = walked.get("after") if isinstance(walked.get("after"), str) else ""
            items, after = self._listing(path, {**params, **({"after": after} if FULLNAME_RE.fullmatch(after) else {})})
            for name, created, data, kind in items:
                message = self._message(kind, data, name, created) if created >= floor else None
                if message:
                    found.setdefault(name, message)
            # Newest first: one item older than `since` means everything after it is older too.
            done = not items or not after or min(item[1] for item in items) < floor
            states[key] = {"done": True} if done else {"after": after}
        ordered = sorted(found.values(), key=lambda m: m.sent_at)
        return PollResult(ordered, {"sources": states}, more=any(not s.get("done") for s in states.values()))

    def _message(self, kind: str, data: dict[str, Any], name: str, created: float) -> InboundMessage | None:
        try:
            return _post(data, name, created) if kind == "t3" else _comment(data, name, created)
        except PayloadInvalid as exc:
            # Skipped (and remembered as seen): one odd item must not stop the source for good.
            logger.warning("reddit connector %s: skipped %s: %s", self.row.pk, name, exc)
            return None

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        # A comment is markdown of up to 10,000 characters; no window, no uploads through the API.
        return ReplyRules(max_chars=10_000, media=False)

    def send(self, reply: OutboundReply) -> str:
        """Comment on the answered post or comment and return the new comment's fullname."""
        thing = reply.in_reply_to or reply.thread_id
        if not FULLNAME_RE.fullmatch(thing):
            raise ProviderRejected(f"no Reddit post or comment to answer in {thing[:60]!r}")
        form = {"api_type": "json", "thing_id": thing, "text": reply.text}
        answer = http.json_or_none(self._api("POST", "/api/comment", data=form))
        result = answer.get("json") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            raise ProviderRejected("/api/comment answered without a json result; the comment may have been posted")
        errors = result.get("errors") or []
        if errors:
            raise _comment_error(errors, result.get("ratelimit"))
        things = (result.get("data") or {}).get("things") if isinstance(result.get("data"), dict) else None
        sent = things[0].get("data", {}).get("name") if isinstance(things, list) and things and isinstance(
            things[0], dict) and isinstance(things[0].get("data"), dict) else None
        if not (isinstance(sent, str) and FULLNAME_RE.fullmatch(sent)):
            # Not retryable: the comment is most likely up, and it must never go twice.
            raise ProviderRejected("/api/comment answered without the new comment's name")
        return sent

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """/api/v1/me: which account the credentials sign in as, and what is listened to."""
        config = self.validate_config(dict(self.row.config or {}))
        if not self.credentials.get("refresh_token") and not (
                self.credentials.get("username") and self.credentials.get("password")):
            raise RedditAuthError("this connector needs a refresh_token (Connect with Reddit) or, for a script app, "
                                  "a username and password")
        me = http.json_or_none(self._api("GET", "/api/v1/me"))
        name = me.get("name") if isinstance(me, dict) else None
        if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
            raise ProviderUnavailable("Reddit /api/v1/me answered without the account's name")
        where = f" in r/{'+'.join(config['subreddits'])}" if config["subreddits"] else ""
        sources = [f'"{clean_text(query, 60)}"{where}' for query in config["queries"]]
        sources += ["mentions"] if config["mentions"] else []
        return f"Signed in as u/{name}; listening to {', '.join(sources)}."

    def oauth_credentials(self, token: dict[str, Any]) -> dict[str, Any]:
        """Only the permanent refresh_token is kept: access tokens are fetched from it as needed."""
        refresh = token.get("refresh_token") if isinstance(token, dict) else None
        if not isinstance(refresh, str) or not refresh:
            error = clean_text(token.get("error"), 80) if isinstance(token, dict) else ""
            reason = error or "the authorize URL must ask for duration=permanent"
            raise RedditAuthError(f"Reddit's token answer has no refresh_token: {reason}")
        return {"refresh_token": refresh}

    # --- OAuth ---------------------------------------------------------------------------------
    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call to the OAuth API; an expired token (401) is fetched again once."""
        url = f"{str(self.config['api_base']).rstrip('/')}{path}"
        for attempt in (1, 2):
            token = self._token(fresh=attempt == 2)
            headers = {"Authorization": f"bearer {token}", "User-Agent": self._user_agent()}
            try:
                response = http.request(method, url, headers=headers, error_mapper=self._api_error, **kwargs)
            except ProviderAuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                continue
            self._note_headroom(response)
            return response
        raise AssertionError("unreachable")

    def _api_error(self, response: httpx.Response, safe_url: str) -> ProviderError:
        self._note_headroom(response)  # a 429 says how long until the window resets
        return _status_error(response, safe_url)

    def _note_headroom(self, response: httpx.Response) -> None:
        remaining, used, reset = (_finite(response.headers.get(f"x-ratelimit-{name}"))
                                  for name in ("remaining", "used", "reset"))
        if remaining is None:
            return
        limit = remaining + used if used is not None else None
        resets_at = timezone.now() + timedelta(seconds=min(max(reset, 0.0), 86_400.0)) if reset is not None else None
        self.note_rate_limit(remaining, limit, resets_at)

    def _token(self, *, fresh: bool = False) -> str:
        key = self._fingerprint()
        with _tokens_lock:
            cached = _tokens.get(key)
            if cached and not fresh and cached[1] > time.monotonic():
                return cached[0]
        token, expires_in = self._fetch_token()
        with _tokens_lock:
            _tokens[key] = (token, time.monotonic() + max(0.0, expires_in - 60))
        return token

    def _fetch_token(self) -> tuple[str, float]:
        refresh = self.credentials.get("refresh_token")
        if refresh:
            grant = {"grant_type": "refresh_token", "refresh_token": str(refresh)}
        else:
            grant = {"grant_type": "password", "username": self._required("username"),
                     "password": self._required("password")}
        url = f"{str(self.config['auth_base']).rstrip('/')}/api/v1/access_token"
        auth = (self._required("client_id"), str(self.credentials.get("client_secret") or ""))
        response = http.request("POST", url, data=grant, auth=auth, error_mapper=_token_error,
                                headers={"User-Agent": self._user_agent()})
        body = http.json_or_none(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            error = clean_text(body.get("error"), 80) if isinstance(body, dict) else "no JSON"
            # Reddit answers a wrong password or revoked refresh token with 200 {"error": "invalid_grant"}.
            raise RedditAuthError(f"Reddit refused the app's credentials: {error or 'no access_token'}",
                                  status=response.status_code)
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0

    def _required(self, name: str) -> str:
        value = self.credentials.get(name)
        if not value:  # an admin must act: nothing to retry
            raise RedditAuthError(f"this connector has no {name} configured")
        return str(value)

    def _fingerprint(self) -> str:
        parts = [str(self.config["auth_base"])] + [str(self.credentials.get(k) or "") for k in self.credential_fields]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def _user_agent(self) -> str:
        # Reddit throttles or blocks generic agents; its rule: <platform>:<app id>:<version> (by /u/<name>).
        if self.config["user_agent"]:
            return self.config["user_agent"]
        username = str(self.credentials.get("username") or "")
        return "server:cxm-listening:0.1" + (f" (by /u/{username})" if USERNAME_RE.fullmatch(username) else "")


def _finite(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- Errors --------------------------------------------------------------------------------------
def _status_error(response: httpx.Response, safe_url: str) -> ProviderError:
    if response.status_code == 429:
        reset = http.retry_after_seconds(response.headers.get("x-ratelimit-reset")
                                         or response.headers.get("retry-after"))
        return ProviderRateLimited(f"Reddit rate limit reached on {safe_url}", retry_after=reset, status=429)
    return http.status_error(response, safe_url)


def _token_error(response: httpx.Response, safe_url: str) -> ProviderError:
    if response.status_code == 401:  # the token endpoint's 401 is the app's id or secret
        return RedditAuthError(f"Reddit refused the app's client_id or client_secret ({safe_url} answered 401)",
                               status=401)
    return _status_error(response, safe_url)


def _comment_error(errors: Any, ratelimit: Any) -> ProviderError:
    """Map [["RATELIMIT", "you are doing that too much. try again in 5 minutes.", "ratelimit"]]."""
    first = errors[0] if isinstance(errors, list) and isinstance(errors[0], list) and errors[0] else [str(errors)]
    code = clean_text(first[0], 60)
    text = clean_text(first[1], 200) if len(first) > 1 else ""
    reason = f"Reddit refused the comment: {code}" + (f": {text}" if text else "")
    if code == "RATELIMIT":
        delay = float(ratelimit) if isinstance(ratelimit, int | float) and not isinstance(ratelimit, bool) else None
        match = RATELIMIT_RE.search(text)
        if delay is None and match:
            delay = int(match[1]) * UNIT_SECONDS[match[2].lower()]
        return ProviderRateLimited(reason, retry_after=delay if delay is not None else 60.0)
    if code in AUTH_ERRORS:
        return RedditAuthError(reason)
    # THREAD_LOCKED, DELETED_COMMENT, DELETED_LINK, TOO_OLD, TOO_LONG, BANNED...: permanent.
    return ProviderRejected(reason)


# --- Inbound payloads ----------------------------------------------------------------------------
def _post(data: dict[str, Any], name: str, created: float) -> InboundMessage | None:
    title = clean_text(optional(data, "title", str, "", name), 300)
    body = optional(data, "selftext", str, "", name)
    link = optional(data, "url", str, "", name)
    if not optional(data, "is_self", bool, True, name) and link.startswith("https://"):
        body = body or link  # a link post's words are its title and where it points
    text = f"{title}\n\n{body}".strip() if body else title
    if text in GONE_TEXT or body in ("[deleted]", "[removed]"):
        return None
    return InboundMessage(
        external_id=name, text=text, author=_author(data, name), sent_at=from_unix(created, f"{name}.created_utc"),
        channel=RedditConnector.channel, thread_id=name, subject=title,
        url=_permalink(optional(data, "permalink", str, "", name)), raw=data,
    )


def _comment(data: dict[str, Any], name: str, created: float) -> InboundMessage | None:
    text = optional(data, "body", str, "", name)
    if text.strip() in GONE_TEXT:
        return None
    parent = require(data, "parent_id", str, name)
    if not FULLNAME_RE.fullmatch(parent):
        raise PayloadInvalid(f"field {name}.parent_id is not a fullname")
    link = optional(data, "link_id", str, "", name)
    context = optional(data, "context", str, "", name)  # inbox items: /r/x/comments/<id>/slug/<c>/?context=3
    if not FULLNAME_RE.fullmatch(link):
        match = CONTEXT_RE.match(context)
        link = f"t3_{match[1]}" if match else (parent if parent.startswith("t3_") else "")
    if not link:
        raise PayloadInvalid(f"{name} names no submission (link_id or context)")
    return InboundMessage(
        external_id=name, text=text, author=_author(data, name), sent_at=from_unix(created, f"{name}.created_utc"),
        channel=RedditConnector.channel, thread_id=link, parent_external_id=parent,
        subject=clean_text(optional(data, "link_title", str, "", name), 300),
        url=_permalink(optional(data, "permalink", str, "", name) or context.split("?")[0]), raw=data,
    )


def _author(data: dict[str, Any], name: str) -> InboundAuthor:
    username = require(data, "author", str, name)
    if not USERNAME_RE.fullmatch(username):  # "[deleted]", or not a Reddit name
        raise PayloadInvalid(f"{name} has no author (a deleted account?)")
    return InboundAuthor(external_id=username.lower(), handle=username, display_name=username,
                         profile_url=f"{WEB}/user/{username}")


def _permalink(path: str) -> str:
    return f"{WEB}{path}" if path.startswith("/r/") else ""


# --- Cursor --------------------------------------------------------------------------------------
def _state(value: Any) -> dict[str, Any]:
    state = value if isinstance(value, dict) else {}
    created, seen, newest = state.get("created"), state.get("seen"), state.get("newest")
    return {"created": float(created) if isinstance(created, int | float) else None,
            "seen": {k: float(v) for k, v in seen.items() if isinstance(v, int | float)}
            if isinstance(seen, dict) else {},
            "newest": newest if isinstance(newest, str) else ""}


def _remember(seen: dict[str, float], new: list[InboundMessage], state: dict[str, Any]) -> dict[str, Any]:
    """The source's high-water mark, its newest stored fullname, and the fullnames seen within
    LOOKBACK_SECONDS of the mark (at most MAX_REMEMBERED, newest first)."""
    marks = [*seen.values(), *([state["created"]] if state["created"] is not None else [])]
    mark = max(marks, default=None)
    newest = max(new, key=lambda m: m.sent_at).external_id if new else state["newest"]
    recent = sorted(((c, n) for n, c in seen.items() if mark is None or c > mark - LOOKBACK_SECONDS), reverse=True)
    return {"created": mark, "newest": newest, "seen": {n: c for c, n in recent[:MAX_REMEMBERED]}}
