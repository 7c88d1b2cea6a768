"""A fake X API v2 on FakeProvider, speaking the documented shapes, and X's side of the Account
Activity webhooks (CRC answers and signatures computed the way X computes them).

- reads (GET /2/users/:id/mentions, /2/tweets/search/recent, /2/users/:id) take the app's bearer
  token or a user token; /2/users/me, POST /2/tweets and POST /2/dm_conversations/with/:id/messages
  only a user token (the app's gets X's 403 "Unsupported Authentication"); anything else gets 401
  {"title": "Unauthorized", ..., "detail": "Unauthorized"};
- timelines answer newest first: {"data": [...], "includes": {"users": [...]}, "meta": {"result_count",
  "newest_id", "oldest_id", "next_token"}}, only {"meta": {"result_count": 0}} when empty; each post
  carries id, text, edit_history_tweet_ids and the requested tweet.fields. since_id, start_time and
  the page token (pagination_token for mentions, next_token for search) narrow them; max_results
  is 5..100 (mentions) or 10..100 (search), else 400 "Invalid Request". Recent search sees the last
  7 days and refuses an older since_id or start_time with X's 400;
- POST /2/tweets refuses duplicate text (403), a reply to an author who never mentioned or engaged
  the account (403), text over 280 weighted characters (400), and answers 201 {"data": {"id", "text"}};
- POST /2/oauth2/token (HTTP basic auth with the client id and secret) takes grant_type
  refresh_token, voids the used refresh token and answers a new pair;
- every answer carries x-rate-limit-limit/-remaining/-reset (epoch seconds) per endpoint; failures are
  scriptable with `fail(path_regex, Reply, after=n)`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes.http import FakeProvider, Recorded, Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x"
BRAND = {"id": "2244994945", "name": "Acme Care", "username": "AcmeCare",
         "public_metrics": {"followers_count": 512292, "following_count": 2038, "tweet_count": 3634}}
SNOWFLAKE_EPOCH_MS = 1288834974657
WINDOW = timedelta(days=7)
LIMITS = {"mentions": 450, "search": 450, "users": 300, "tweets": 100, "dm": 200}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def problem(status: int, title: str, detail: str, kind: str = "about:blank") -> Reply:
    return Reply(status, {"title": title, "detail": detail, "type": kind, "status": status})


def invalid(parameter: str, value: str, message: str) -> Reply:
    return Reply(400, {"errors": [{"parameters": {parameter: [value]}, "message": message}],
                       "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                       "type": "https://api.twitter.com/2/problems/invalid-request"})


UNAUTHORIZED = problem(401, "Unauthorized", "Unauthorized")
APP_ONLY = Reply(403, fixture("error_403_app_only"))
DUPLICATE = Reply(403, fixture("error_403_duplicate"))
REPLY_NOT_ALLOWED = Reply(403, fixture("error_403_reply_not_allowed"))


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The header X sends with a delivery: base64 HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"x-twitter-webhooks-signature": "sha256=" + base64.b64encode(digest).decode()}


def mint(when: datetime, sequence: int) -> str:
    """A snowflake id: milliseconds since X's epoch in the top bits."""
    return str(((int(when.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS) << 22) | (sequence % 4096))


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeX:
    def __init__(self, provider: FakeProvider, *, bearer: str, client_id: str, client_secret: str,
                 access_token: str, refresh_token: str) -> None:
        self.provider, self.bearer = provider, bearer
        self.client = (client_id, client_secret)
        self.access_tokens, self.refresh_tokens = {access_token}, {refresh_token}
        self.users: dict[str, dict[str, Any]] = {BRAND["id"]: copy.deepcopy(BRAND)}
        self.posts: dict[str, dict[str, Any]] = {}  # id -> stored post (with "_mentions", "_kind")
        self.posted: list[dict[str, Any]] = []  # bodies of accepted POST /2/tweets
        self.dms: list[dict[str, Any]] = []  # (participant, body) of accepted DMs
        self.dm_closed: set[str] = set()  # accounts that do not take our DMs
        self.scripted: deque[list] = deque()
        self.remaining = dict(LIMITS)
        self.reset_at = int(time.time()) + 900
        self._sequence = itertools.count(1)
        self._page_tokens: dict[str, tuple[str, str]] = {}  # token -> (query signature, until id)
        routes = [("GET", r"/2/users/(?P<id>\d+)/mentions", self._mentions, "mentions"),
                  ("GET", r"/2/tweets/search/recent", self._search, "search"),
                  ("GET", r"/2/users/me", self._me, "users"),
                  ("GET", r"/2/users/(?P<id>\d+)", self._user, "users"),
                  ("POST", r"/2/tweets", self._create_post, "tweets"),
                  ("POST", r"/2/dm_conversations/with/(?P<id>[^/]+)/messages", self._send_dm, "dm")]
        for method, pattern, handler, limit in routes:
            provider.route(method, pattern)(self._guarded(handler, limit))
        provider.route("POST", r"/2/oauth2/token")(self._token)

    @property
    def url(self) -> str:
        return self.provider.url

    # --- Scripting -----------------------------------------------------------------------------
    def add_user(self, user: dict[str, Any]) -> dict[str, Any]:
        self.users[user["id"]] = copy.deepcopy(user)
        return user

    def add_post(self, text: str, author: dict[str, Any], *, minutes_ago: float = 0, mention: bool = True,
                 reply_to: str = "", repost_of: str = "") -> dict[str, Any]:
        """Store a post by `author` (a v2 user), mentioning the brand unless told otherwise."""
        self.add_user(author)
        when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        post_id = mint(when, next(self._sequence))
        parent = self.posts.get(reply_to)
        post = {"id": post_id, "text": text, "author_id": author["id"], "created_at": rfc3339(when),
                "edit_history_tweet_ids": [post_id], "lang": "en",
                "conversation_id": parent["conversation_id"] if parent else post_id,
                "_mentions": [BRAND["id"]] if mention else [], "_kind": "post"}
        if reply_to:
            post["referenced_tweets"] = [{"type": "replied_to", "id": reply_to}]
            post["in_reply_to_user_id"] = parent["author_id"] if parent else BRAND["id"]
        if repost_of:
            post["referenced_tweets"] = [{"type": "retweeted", "id": repost_of}]
            post["_kind"] = "repost"
        self.posts[post_id] = post
        return post

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def fail(self, path: str, reply: Reply, *, after: int = 0) -> None:
        """Answer a call of `path` with `reply` once, after letting `after` calls through."""
        self.scripted.append([path, after, reply])

    def calls(self, pattern: str) -> list[Recorded]:
        return self.provider.calls(pattern)

    # --- Protocol ------------------------------------------------------------------------------
    def _guarded(self, handler, limit: str):
        def serve(request: Recorded) -> Reply:
            self.remaining[limit] = max(0, self.remaining[limit] - 1)
            reply = self._authorised(request, handler)
            reply.headers = {"x-rate-limit-limit": str(LIMITS[limit]), "x-rate-limit-remaining":
                             str(self.remaining[limit]), "x-rate-limit-reset": str(self.reset_at), **reply.headers}
            return reply
        return serve

    def _authorised(self, request: Recorded, handler) -> Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        user_context = token in self.access_tokens
        if not user_context and token != self.bearer:
            return copy.deepcopy(UNAUTHORIZED)
        if self.scripted and re.fullmatch(self.scripted[0][0], request.path):
            if self.scripted[0][1] == 0:
                return copy.deepcopy(self.scripted.popleft()[2])
            self.scripted[0][1] -= 1
        if handler in (self._me, self._create_post, self._send_dm) and not user_context:
            return copy.deepcopy(APP_ONLY)
        return handler(request)

    def _mentions(self, request: Recorded) -> Reply:
        user_id = request.match["id"]
        posts = [p for p in self.posts.values() if user_id in p["_mentions"]]
        return self._timeline(request, posts, "pagination_token", 5)

    def _search(self, request: Recorded) -> Reply:
        query = request.query.get("query", "")
        if not query.strip() or len(query) > 512:
            return invalid("query", query, "There were errors processing your request: query must be 1 to 512")
        floor = datetime.now(UTC) - WINDOW
        posts = [p for p in self.posts.values() if _matches(query, p, self.users) and _time(p) >= floor]
        since, start = request.query.get("since_id"), request.query.get("start_time")
        if since and _snowflake_time(since) < floor:
            return invalid("since_id", since, f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet id "
                                              f"created after {rfc3339(floor)}")
        if start and _parse(start) < floor:
            return invalid("start_time", start, f"Invalid 'start_time':'{start}'. 'start_time' must be on or "
                                                f"after {rfc3339(floor)}")
        return self._timeline(request, posts, "next_token", 10)

    def _timeline(self, request: Recorded, posts: list[dict[str, Any]], token_param: str, low: int) -> Reply:
        query = request.query
        try:
            limit = int(query.get("max_results", "10"))
        except ValueError:
            limit = -1
        if not low <= limit <= 100:
            return invalid("max_results", query.get("max_results", ""), f"The `max_results` query parameter value "
                           f"[{query.get('max_results')}] is not between {low} and 100")
        signature = json.dumps({k: v for k, v in sorted(query.items()) if k != token_param})
        token = query.get(token_param)
        if token and self._page_tokens.get(token, ("", ""))[0] != signature:
            return invalid(token_param, token, f"The `{token_param}` query parameter value [{token}] is not valid")
        items = sorted(posts, key=lambda p: int(p["id"]), reverse=True)
        if query.get("since_id"):
            items = [p for p in items if int(p["id"]) > int(query["since_id"])]
        if query.get("start_time"):
            items = [p for p in items if _time(p) >= _parse(query["start_time"])]
        if token:
            items = [p for p in items if int(p["id"]) < int(self._page_tokens[token][1])]
        page, rest = items[:limit], items[limit:]
        if not page:
            return Reply(200, {"meta": {"result_count": 0}})
        meta = {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"], "result_count": len(page)}
        if rest:
            meta["next_token"] = following = "7140dibdnow9c7btw4" + secrets.token_hex(8)
            self._page_tokens[following] = (signature, page[-1]["id"])
        return Reply(200, {"data": [self._shaped(p, query) for p in page], "includes": {"users": [
            self._user_shape(self.users[a], query) for a in dict.fromkeys(p["author_id"] for p in page)]},
            "meta": meta})

    def _shaped(self, post: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        wanted = set(query.get("tweet.fields", "").split(",")) | {"id", "text", "edit_history_tweet_ids"}
        return {k: v for k, v in post.items() if k in wanted}

    def _user_shape(self, user: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        wanted = set(query.get("user.fields", "").split(",")) | {"id", "name", "username"}
        return {k: v for k, v in user.items() if k in wanted}

    def _me(self, request: Recorded) -> Reply:
        return Reply(200, {"data": self._user_shape(self.users[BRAND["id"]], request.query)})

    def _user(self, request: Recorded) -> Reply:
        user = self.users.get(request.match["id"])
        if not user:
            return Reply(200, {"errors": [{"value": request.match["id"], "detail": "Could not find user with id: "
                               f"[{request.match['id']}].", "title": "Not Found Error", "resource_type": "user",
                               "type": "https://api.twitter.com/2/problems/resource-not-found"}]})
        return Reply(200, {"data": self._user_shape(user, request.query)})

    def _create_post(self, request: Recorded) -> Reply:
        body = request.json() if request.headers.get("content-type", "").startswith("application/json") else None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return invalid("text", "", "text must be given")
        if len(re.sub(r"https?://\S+", "x" * 23, body["text"])) > 280:  # links count 23 (CJK 2 not modelled)
            return invalid("text", body["text"][:20], "Your Tweet text is too long.")
        if any(p["author_id"] == BRAND["id"] and p["text"] == body["text"] for p in self.posts.values()):
            return copy.deepcopy(DUPLICATE)
        target = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        parent = self.posts.get(target) if target else None
        if target and not parent:
            return invalid("reply.in_reply_to_tweet_id", str(target), "The post you are replying to does not exist")
        if parent and BRAND["id"] not in parent["_mentions"] and parent["author_id"] != BRAND["id"]:
            return copy.deepcopy(REPLY_NOT_ALLOWED)
        post = self.add_post(body["text"], self.users[BRAND["id"]], mention=False, reply_to=target or "")
        post["_mentions"] = [parent["author_id"]] if parent else []
        self.posted.append(body)
        return Reply(201, {"data": {"id": post["id"], "text": post["text"],
                                    "edit_history_tweet_ids": [post["id"]]}})

    def _send_dm(self, request: Recorded) -> Reply:
        participant, body = request.match["id"], request.json()
        if participant not in self.users:
            return invalid("participant_id", participant, "The participant_id is not valid")
        if participant in self.dm_closed:
            return problem(403, "Forbidden", "You are not permitted to send Direct Messages to this user.")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not 0 < len(body["text"]) <= 10_000:
            return invalid("text", "", "text must be 1 to 10000 characters")
        self.dms.append({"participant": participant, **body})
        event_id = mint(datetime.now(UTC), next(self._sequence))
        first, second = sorted([participant, BRAND["id"]], key=int)
        return Reply(201, {"data": {"dm_conversation_id": f"{first}-{second}", "dm_event_id": event_id}})

    def _token(self, request: Recorded) -> Reply:
        expected = "Basic " + base64.b64encode(":".join(self.client).encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return Reply(401, {"error": "unauthorized_client",
                               "error_description": "Missing valid authorization header"})
        form = request.form()
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, fixture("token_invalid"))
        self.refresh_tokens.discard(form["refresh_token"])  # X's refresh tokens are single-use
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return Reply(200, {"token_type": "bearer", "expires_in": 7200, "access_token": access,
                           "scope": "tweet.read tweet.write users.read dm.read dm.write offline.access",
                           "refresh_token": refresh})


def _matches(query: str, post: dict[str, Any], users: dict[str, dict[str, Any]]) -> bool:
    """A small subset of X's search syntax: words (all must appear), -is:retweet, from:<username>."""
    text = post["text"].lower()
    for term in query.lower().split():
        if term == "-is:retweet":
            if post["_kind"] == "repost":
                return False
        elif term.startswith("from:"):
            if users[post["author_id"]]["username"].lower() != term[5:]:
                return False
        elif term not in text:
            return False
    return True


def _time(post: dict[str, Any]) -> datetime:
    return _parse(post["created_at"])


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _snowflake_time(post_id: str) -> datetime:
    return datetime.fromtimestamp(((int(post_id) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000, tz=UTC)
