"""A fake Mastodon instance on FakeProvider, speaking the documented REST and streaming API.

- every call needs `Authorization: Bearer <token>`; otherwise 401 {"error": "The access token is invalid"};
- GET /api/v1/notifications (types[], since_id, max_id, min_id, limit: default 40, max 80) and
  GET /api/v1/timelines/tag/:hashtag (same paging, default 20, max 40) answer newest first, with a
  Link header (rel="next" max_id=<oldest>, rel="prev" min_id=<newest>) when there are results;
- GET /api/v1/statuses/:id, 404 {"error": "Record not found"};
- POST /api/v1/statuses (JSON or form): status (<= 500 characters, else 422), in_reply_to_id (must
  exist, else 404), visibility; an Idempotency-Key seen before returns the same status, posting nothing;
- GET /api/v1/streaming/user/notification and /api/v1/streaming/hashtag?tag=: server-sent events
  queued with `stream_event`, with ":thump" heartbeats, then the stream ends;
- GET /api/v1/accounts/verify_credentials answers our CredentialAccount;
- every authenticated answer carries X-RateLimit-Limit (300), X-RateLimit-Remaining (one less per
  call) and X-RateLimit-Reset (an ISO 8601 time), as Mastodon sends them;
- POST /oauth/token (no bearer: client_id and client_secret in the form, a single-use code from
  `authorize()`, its redirect_uri and, when the code was asked with a PKCE S256 challenge, the
  code_verifier) answers {"access_token", "token_type": "Bearer", "scope", "created_at"}, else
  401 invalid_client or 400 invalid_grant with an error_description, as Doorkeeper does;
- failures are scriptable: `fail(path_regex, Reply)` answers the next matching call.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.http import FakeProvider, Recorded, Reply

OUR_ACCOUNT = {"id": "109000000000000001", "username": "acme", "acct": "acme", "display_name": "Acme Care",
               "url": "https://mastodon.social/@acme", "followers_count": 5400}
VISIBILITIES = ("public", "unlisted", "private", "direct")


class FakeMastodon:
    def __init__(self, provider: FakeProvider, token: str, *, max_chars: int = 500, client_id: str = "",
                 client_secret: str = "") -> None:
        self.provider, self.token, self.max_chars = provider, token, max_chars
        self.client = (client_id, client_secret)
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (redirect_uri, challenge, scope)
        self.rate_remaining = 300
        self.rate_reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() // 300 * 300 + 300))
        self.statuses: dict[str, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.posted: list[dict[str, Any]] = []  # bodies of accepted POST /api/v1/statuses
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.stream: list[str] = []  # raw SSE text, sent in order
        self.scripted: deque[list] = deque()  # [path regex, calls to let through first, reply]
        self._status_ids = itertools.count(113410700000000000)
        self._notification_ids = itertools.count(34975900)
        routes = [("GET", r"/api/v1/notifications", self._notifications),
                  ("GET", r"/api/v1/timelines/tag/(?P<tag>[^/]+)", self._tag_timeline),
                  ("GET", r"/api/v1/statuses/(?P<id>[^/]+)", self._status),
                  ("POST", r"/api/v1/statuses", self._post_status),
                  ("GET", r"/api/v1/streaming/(user/notification|hashtag)", self._streaming),
                  ("GET", r"/api/v1/accounts/verify_credentials", self._verify_credentials)]
        for method, pattern, handler in routes:
            provider.route(method, pattern)(self._guarded(handler))
        provider.route("POST", r"/oauth/token")(self._oauth_token)

    @property
    def url(self) -> str:
        return self.provider.url

    # --- Scripting -----------------------------------------------------------------------------
    def add_status(self, status: dict[str, Any], *, new_id: bool = True) -> dict[str, Any]:
        status = copy.deepcopy(status)
        if new_id:
            status["id"] = str(next(self._status_ids))
        self.statuses[status["id"]] = status
        return status

    def mention(self, status: dict[str, Any]) -> dict[str, Any]:
        """Store the status and notify our account of it, as a mention."""
        status = self.add_status(status)
        self.notifications.append({"id": str(next(self._notification_ids)), "type": "mention",
                                   "created_at": status["created_at"], "account": status["account"],
                                   "status": status})
        return status

    def notify(self, kind: str, account: dict[str, Any]) -> None:
        self.notifications.append({"id": str(next(self._notification_ids)), "type": kind,
                                   "created_at": "2026-11-02T10:00:00.000Z", "account": account, "status": None})

    def stream_event(self, event: str, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.stream.append(f"event: {event}\ndata: {data}\n\n")

    def authorize(self, redirect_uri: str, *, challenge: str = "", scope: str = "read write") -> str:
        """The code /oauth/authorize redirects back with once the account owner approves."""
        code = base64.urlsafe_b64encode(hashlib.sha256(f"{len(self.codes)}{redirect_uri}".encode()).digest())[:43]
        self.codes[code.decode()] = (redirect_uri, challenge, scope)
        return code.decode()

    def fail(self, path: str, reply: Reply, *, after: int = 0) -> None:
        """Answer a call of `path` with `reply` once, after letting `after` calls through."""
        self.scripted.append([path, after, reply])

    def calls(self, pattern: str) -> list[Recorded]:
        return self.provider.calls(pattern)

    # --- Protocol ------------------------------------------------------------------------------
    def _guarded(self, handler):
        def serve(request: Recorded) -> Reply:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return Reply(401, {"error": "The access token is invalid"})
            self.rate_remaining = max(0, self.rate_remaining - 1)
            headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": str(self.rate_remaining),
                       "X-RateLimit-Reset": self.rate_reset}
            reply = None
            if self.scripted and re.fullmatch(self.scripted[0][0], request.path):
                if self.scripted[0][1] == 0:
                    reply = self.scripted.popleft()[2]
                else:
                    self.scripted[0][1] -= 1
            reply = reply or handler(request)
            return Reply(reply.status, reply.body, {**headers, **reply.headers})
        return serve

    def _verify_credentials(self, request: Recorded) -> Reply:
        return Reply(200, {**OUR_ACCOUNT, "locked": False, "bot": False, "created_at": "2022-11-01T00:00:00.000Z",
                           "note": "<p>Acme customer care</p>", "statuses_count": 812, "following_count": 3,
                           "source": {"privacy": "public", "sensitive": False, "language": "en", "note": "",
                                      "fields": [], "follow_requests_count": 0}})

    def _oauth_token(self, request: Recorded) -> Reply:
        form = request.json() if request.headers.get("content-type", "").startswith("application/json") \
            else request.form()
        if not self.client[0] or (form.get("client_id"), form.get("client_secret")) != self.client:
            return Reply(401, {"error": "invalid_client", "error_description": "Client authentication failed due "
                               "to unknown client, no client authentication included, or unsupported "
                               "authentication method."})
        granted = self.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or granted is None \
                or form.get("redirect_uri") != granted[0] or not _pkce_ok(granted[1], form.get("code_verifier")):
            return Reply(400, {"error": "invalid_grant", "error_description": "The provided authorization grant is "
                               "invalid, expired, revoked, does not match the redirection URI used in the "
                               "authorization request, or was issued to another client."})
        return Reply(200, {"access_token": self.token, "token_type": "Bearer", "scope": granted[2],
                           "created_at": int(time.time())})

    def _notifications(self, request: Recorded) -> Reply:
        wanted = request.query.get("types[]")
        items = [n for n in self.notifications if not wanted or n["type"] == wanted]
        return self._page(request, items, default=40, maximum=80)

    def _tag_timeline(self, request: Recorded) -> Reply:
        tag = request.match["tag"].lower()
        items = [s for s in self.statuses.values()
                 if any(t.get("name", "").lower() == tag for t in s.get("tags", []))
                 and s.get("visibility") in ("public", None) and s.get("reblog") is None]
        return self._page(request, items, default=20, maximum=40)

    def _page(self, request: Recorded, items: list[dict[str, Any]], *, default: int, maximum: int) -> Reply:
        try:
            limit = min(maximum, max(1, int(request.query.get("limit", default))))
        except ValueError:
            return Reply(422, {"error": "limit is invalid"})
        since, max_id, min_id = (request.query.get(k) for k in ("since_id", "max_id", "min_id"))
        items = sorted(items, key=lambda item: _order(item["id"]), reverse=True)  # newest first
        if since:
            items = [i for i in items if _order(i["id"]) > _order(since)]
        if max_id:
            items = [i for i in items if _order(i["id"]) < _order(max_id)]
        if min_id:  # the page immediately above min_id, still answered newest first
            items = [i for i in items if _order(i["id"]) > _order(min_id)][-limit:]
        page = items[:limit]
        headers = {}
        if page:
            base = f"{self.url}{request.path}"
            headers["Link"] = (f'<{base}?max_id={page[-1]["id"]}>; rel="next", '
                               f'<{base}?min_id={page[0]["id"]}>; rel="prev"')
        return Reply(200, page, headers)

    def _status(self, request: Recorded) -> Reply:
        status = self.statuses.get(request.match["id"])
        return Reply(200, status) if status else Reply(404, {"error": "Record not found"})

    def _post_status(self, request: Recorded) -> Reply:
        key = request.headers.get("idempotency-key")
        if key and key in self.idempotency:
            return Reply(200, self.idempotency[key])
        if request.headers.get("content-type", "").startswith("application/json"):
            params = request.json()
        else:
            params = dict(parse_qsl(request.body.decode()))
        text, visibility = params.get("status") or "", params.get("visibility") or "public"
        if not text.strip():
            return Reply(422, {"error": "Validation failed: Text can't be blank"})
        if len(text) > self.max_chars:
            return Reply(422, {"error": f"Validation failed: Text character limit of {self.max_chars} exceeded"})
        if visibility not in VISIBILITIES:
            return Reply(422, {"error": "Validation failed: Visibility is not included in the list"})
        parent = params.get("in_reply_to_id")
        if parent and parent not in self.statuses:
            return Reply(404, {"error": "Record not found"})
        status = self.add_status({
            "created_at": "2026-11-02T10:00:00.000Z", "in_reply_to_id": parent, "visibility": visibility,
            "spoiler_text": params.get("spoiler_text") or "", "content": f"<p>{text}</p>", "reblog": None,
            "account": OUR_ACCOUNT, "media_attachments": [], "tags": [], "url": "https://mastodon.social/@acme/1",
        })
        self.posted.append(params)
        if key:
            self.idempotency[key] = status
        return Reply(200, status)

    def _streaming(self, request: Recorded) -> Reply:
        body = ":)\n" + "".join(f":thump\n{event}" for event in self.stream)
        return Reply(200, body.encode(), {"Content-Type": "text/event-stream"})


def _order(value: str) -> tuple[int, str]:
    return len(value), value


def _pkce_ok(challenge: str, verifier: str | None) -> bool:
    if not challenge:
        return True
    digest = hashlib.sha256((verifier or "").encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
