"""A fake Reddit on FakeProvider, speaking the OAuth and API protocol over real HTTP.

- POST /api/v1/access_token: HTTP basic auth with the app's client_id:client_secret (else 401
  {"message": "Unauthorized", "error": 401}); grant_type=password with the script account's
  username and password, grant_type=refresh_token, or grant_type=authorization_code with a
  single-use code from `authorize()` and its redirect_uri (answered with a refresh_token when the
  code was asked with duration=permanent); a wrong grant gets 200 {"error": "invalid_grant"}, as
  Reddit answers it. Tokens are "bearer" and can be expired by the test.
- every API call needs "Authorization: bearer <live token>" (else 401) and a descriptive
  User-Agent (a library's default agent gets 403, as Reddit blocks them); answers carry the
  X-Ratelimit-Used/Remaining/Reset headers (600 calls a window; used counts the calls made).
- GET /api/v1/me: the signed-in account ({"name", "id", "created_utc", ...}).
- GET /r/<a+b>/search (restrict_sr=1) and /search: posts whose title or selftext contain q,
  newest first, `limit` and `after` paging, as Listing JSON; GET /message/mentions: comments.
- POST /api/comment (api_type=json, thing_id, text): {"json": {"errors": [], "data": {"things":
  [<the new t1>]}}}, or errors such as THREAD_LOCKED for a locked submission.
- any endpoint's next answers can be scripted: `script("comment", Reply(...), after=0)`.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections import deque
from typing import Any

from tests.fakes.http import FakeProvider, Recorded, Reply, ScriptedFake

GENERIC_AGENTS = ("python-httpx", "python-requests", "curl")


class FakeReddit(ScriptedFake):
    def __init__(self, provider: FakeProvider, *, client_id: str, client_secret: str, username: str = "",
                 password: str = "", refresh_token: str = "") -> None:
        self.provider = provider
        self.app = (client_id, client_secret)
        self.account = (username, password)
        self.refresh_token = refresh_token
        self.live_tokens: set[str] = set()
        self.posts: list[dict[str, Any]] = []  # t3 data, any order
        self.mentions: list[dict[str, Any]] = []  # t1 data in the inbox
        self.locked: set[str] = set()  # submissions whose comments are locked
        self.comments: list[dict[str, str]] = []  # accepted /api/comment forms
        self.scripted: dict[str, deque[list]] = {}
        self.codes: dict[str, tuple[str, str]] = {}  # unused code -> (redirect_uri, duration)
        self.calls_made = 0
        self._ids = itertools.count(1)
        self._comment_ids = itertools.count(1)
        provider.route("POST", r"/api/v1/access_token")(self._access_token)
        provider.route("GET", r"/r/(?P<subs>[A-Za-z0-9_+]+)/search")(self._api("search", self._search))
        provider.route("GET", r"/search")(self._api("search", self._search))
        provider.route("GET", r"/message/mentions")(self._api("mentions", self._mentions))
        provider.route("POST", r"/api/comment")(self._api("comment", self._comment))
        provider.route("GET", r"/api/v1/me")(self._api("me", self._me))

    @property
    def url(self) -> str:
        return self.provider.url

    # --- Scripting -----------------------------------------------------------------------------
    def add_post(self, data: dict[str, Any]) -> dict[str, Any]:
        self.posts.append(copy.deepcopy(data))
        return data

    def add_mention(self, data: dict[str, Any]) -> dict[str, Any]:
        self.mentions.append(copy.deepcopy(data))
        return data

    def authorize(self, redirect_uri: str, *, duration: str = "permanent") -> str:
        """The code /api/v1/authorize redirects back with once the account owner allows the app."""
        code = f"code-{len(self.codes) + 1}-{abs(hash(redirect_uri)) % 10**8}"
        self.codes[code] = (redirect_uri, duration)
        return code

    def expire_tokens(self) -> None:
        """Every token issued so far expires: the next API call with one gets 401."""
        self.live_tokens.clear()

    # --- Protocol ------------------------------------------------------------------------------
    def _access_token(self, request: Recorded) -> Reply:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client = tuple(base64.b64decode(encoded).decode().split(":", 1))
        except ValueError:
            client = ()
        if scheme.lower() != "basic" or client != self.app:
            return Reply(401, {"message": "Unauthorized", "error": 401})
        scripted = self._scripted("token")
        if scripted:
            return scripted
        form = request.form()
        grant = form.get("grant_type")
        if grant == "password":
            ok = (form.get("username"), form.get("password")) == self.account and all(self.account)
        elif grant == "refresh_token":
            ok = bool(self.refresh_token) and form.get("refresh_token") == self.refresh_token
        elif grant == "authorization_code":
            return self._code_grant(form)
        else:
            return Reply(200, {"error": "unsupported_grant_type"})
        if not ok:
            return Reply(200, {"error": "invalid_grant"})
        token = f"fake-token-{next(self._ids)}"
        self.live_tokens.add(token)
        return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 86400, "scope": "*"})

    def _code_grant(self, form: dict[str, str]) -> Reply:
        granted = self.codes.pop(form.get("code", ""), None)
        if granted is None or form.get("redirect_uri") != granted[0]:
            return Reply(200, {"error": "invalid_grant"})
        token = f"fake-token-{next(self._ids)}"
        self.live_tokens.add(token)
        answer = {"access_token": token, "token_type": "bearer", "expires_in": 86400,
                  "scope": "identity privatemessages read submit"}
        if granted[1] == "permanent":
            self.refresh_token = f"{next(self._ids)}-r-permanent-8b1e"
            answer["refresh_token"] = self.refresh_token
        return Reply(200, answer)

    def _api(self, endpoint: str, handler):
        def serve(request: Recorded) -> Reply:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token not in self.live_tokens:
                return Reply(401, {"message": "Unauthorized", "error": 401},
                             headers={"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
            agent = request.headers.get("user-agent", "")
            if not agent or agent.lower().startswith(GENERIC_AGENTS):
                return Reply(403, "<html><body>Blocked: set a descriptive User-Agent</body></html>")
            reply = self._scripted(endpoint) or handler(request)
            self.calls_made += 1
            headers = {"x-ratelimit-used": str(self.calls_made), "x-ratelimit-remaining": f"{600 - self.calls_made}.0",
                       "x-ratelimit-reset": "412"}
            return Reply(reply.status, reply.body, {**headers, **reply.headers})

        return serve

    def _search(self, request: Recorded) -> Reply:
        query = request.query.get("q", "").lower()
        if request.query.get("sort") != "new" or not query:
            return Reply(400, {"message": "Bad Request", "error": 400})
        subs = {s.lower() for s in (request.match["subs"].split("+") if request.match.groupdict().get("subs") else [])}
        if subs and request.query.get("restrict_sr") not in ("1", "true", "on"):
            subs = set()  # without restrict_sr Reddit searches everywhere
        hits = [p for p in self.posts if (not subs or p["subreddit"].lower() in subs)
                and query in f"{p.get('title', '')} {p.get('selftext', '')}".lower()]
        return self._listing("t3", hits, request)

    def _me(self, request: Recorded) -> Reply:
        name = self.account[0] or "AcmeCare"
        return Reply(200, {"name": name, "id": "1w72", "created_utc": 1577836800.0, "verified": True,
                           "has_verified_email": True, "is_suspended": False, "link_karma": 12, "comment_karma": 340,
                           "subreddit": {"display_name_prefixed": f"u/{name}"}})

    def _mentions(self, request: Recorded) -> Reply:
        return self._listing("t1", self.mentions, request)

    def _listing(self, kind: str, items: list[dict[str, Any]], request: Recorded) -> Reply:
        items = sorted(items, key=lambda d: d["created_utc"], reverse=True)
        after = request.query.get("after")
        if after:
            names = [d["name"] for d in items]
            items = items[names.index(after) + 1:] if after in names else []
        limit = max(1, min(100, int(request.query.get("limit", 25))))
        page = items[:limit]
        more = len(items) > limit
        return Reply(200, {"kind": "Listing", "data": {
            "after": page[-1]["name"] if more else None, "dist": len(page), "modhash": None, "geo_filter": "",
            "before": None, "children": [{"kind": kind, "data": d} for d in page]}})

    def _comment(self, request: Recorded) -> Reply:
        form = request.form()
        thing, text = form.get("thing_id", ""), form.get("text", "")
        if form.get("api_type") != "json":
            return Reply(200, '<html>api_type=json missing</html>')
        known = {p["name"]: p["name"] for p in self.posts}
        known.update({m["name"]: m.get("link_id") or "t3_" + m["context"].split("/")[4] for m in self.mentions})
        if thing not in known:
            return Reply(200, {"json": {"errors": [["DELETED_COMMENT", "that comment has been deleted", "parent"]]}})
        if not text.strip():
            return Reply(200, {"json": {"errors": [["NO_TEXT", "we need something here", "text"]]}})
        if len(text) > 10_000:
            return Reply(200, {"json": {"errors": [["TOO_LONG", "this is too long (max: 10000)", "text"]]}})
        if known[thing] in self.locked:
            return Reply(200, {"json": {"errors": [["THREAD_LOCKED", "Comments are locked.", "parent"]]}})
        self.comments.append(form)
        new_id = f"kz{next(self._comment_ids):05d}"
        return Reply(200, {"json": {"errors": [], "data": {"things": [{"kind": "t1", "data": {
            "name": f"t1_{new_id}", "id": new_id, "parent_id": thing, "link_id": known[thing],
            "body": text, "author": self.account[0] or "AcmeCare"}}]}}})
