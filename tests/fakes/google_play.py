"""A fake Google Play Developer API (Android Publisher v3 reviews) and Google OAuth token endpoint
on FakeProvider, over real HTTP.

- POST /token: the JWT bearer grant (grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer,
  assertion=<JWT>). The assertion's RS256 signature is VERIFIED with the service account's public
  key, and its iss (client_email), aud (this token_uri), scope, iat and exp (an hour at most)
  checked; a bad one gets 400 {"error": "invalid_grant", "error_description": ...} as Google
  answers it. Tokens are "Bearer" and can be expired by the test.
- every API call needs "Authorization: Bearer <live token>" (else 401 UNAUTHENTICATED); an
  unknown package gets 404 NOT_FOUND; errors are {"error": {"code", "message", "status"}}.
- GET /androidpublisher/v3/applications/<package>/reviews: the reviews whose comments changed in
  the last 7 days (Google's window), most recently modified first, `maxResults` (at most 100) and
  `token` paging with tokenPagination.nextPageToken; translationLanguage "translates" the text.
- POST .../reviews/<reviewId>:reply {"replyText"}: sets (replaces) the developerComment and
  answers {"result": {"replyText", "lastEdited"}}; more than 350 characters gets 400.
- any endpoint's next answers can be scripted: `script("list", Reply(...), after=0)`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import time
from collections import deque
from typing import Any

import jwt

from tests.fakes.http import FakeProvider, Recorded, Reply, ScriptedFake

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
WEEK = 7 * 86400


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


class FakeGooglePlay(ScriptedFake):
    def __init__(self, provider: FakeProvider, *, public_key: Any, client_email: str, package_name: str) -> None:
        self.provider = provider
        self.public_key = public_key
        self.client_email = client_email
        self.package_name = package_name
        self.reviews: dict[str, dict[str, Any]] = {}  # reviewId -> review in the API's shape
        self.live_tokens: set[str] = set()
        self.assertions: list[dict[str, Any]] = []  # verified JWT claims, in order
        self.replies: list[dict[str, Any]] = []  # accepted reply bodies
        self.scripted: dict[str, deque[list]] = {}
        self._ids = itertools.count(1)
        base = r"/androidpublisher/v3/applications/(?P<package>[^/]+)/reviews"
        provider.route("POST", r"/token")(self._token)
        provider.route("GET", base)(self._api("list", self._list))
        provider.route("POST", base + r"/(?P<review>[^/]+):reply")(self._api("reply", self._reply))

    @property
    def url(self) -> str:
        return self.provider.url

    @property
    def token_uri(self) -> str:
        return f"{self.provider.url}/token"

    # --- Scripting -----------------------------------------------------------------------------
    def add_review(self, review: dict[str, Any]) -> dict[str, Any]:
        self.reviews[review["reviewId"]] = copy.deepcopy(review)
        return review

    def edit_review(self, review_id: str, text: str, rating: int, at: int) -> None:
        """The customer edits their review: the userComment changes, its lastModified too."""
        user = self._user_comment(self.reviews[review_id])
        user.update({"text": text, "starRating": rating, "lastModified": {"seconds": str(at), "nanos": 0}})

    def expire_tokens(self) -> None:
        self.live_tokens.clear()

    # --- Protocol ------------------------------------------------------------------------------
    def _token(self, request: Recorded) -> Reply:
        scripted = self._scripted("token")
        if scripted:
            return scripted
        form = request.form()
        if form.get("grant_type") != JWT_GRANT:
            return Reply(400, {"error": "unsupported_grant_type",
                               "error_description": f"Invalid grant_type: {form.get('grant_type', '')}"})
        try:
            claims = jwt.decode(form.get("assertion", ""), self.public_key, algorithms=["RS256"],
                                audience=self.token_uri, issuer=self.client_email,
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.InvalidSignatureError:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        except jwt.PyJWTError as exc:
            return Reply(400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"})
        if claims["exp"] - claims["iat"] > 3600:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a "
                               "short-lived token (60 minutes) and in a reasonable timeframe."})
        if claims["scope"] != SCOPE:
            return Reply(400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."})
        self.assertions.append(claims)
        token = f"ya29.fake-token-{next(self._ids)}"
        self.live_tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _api(self, endpoint: str, handler):
        def serve(request: Recorded) -> Reply:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self.live_tokens:
                return Reply(401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                             "credentials. Expected OAuth 2 access token, login cookie or other valid "
                             "authentication credential."), {"www-authenticate": 'Bearer realm="https://accounts.'
                             'google.com/", error="invalid_token"'})
            scripted = self._scripted(endpoint)
            if scripted:
                return scripted
            if request.match["package"] != self.package_name:
                return Reply(404, google_error(404, "NOT_FOUND", f"Package not found: {request.match['package']}."))
            return handler(request)

        return serve

    def _list(self, request: Recorded) -> Reply:
        try:
            size = int(request.query.get("maxResults", "10"))
            start = int(base64.urlsafe_b64decode(request.query["token"]).decode()) if "token" in request.query else 0
        except ValueError:
            return Reply(400, google_error(400, "INVALID_ARGUMENT", "Invalid value for a request parameter."))
        if not 1 <= size <= 100:
            return Reply(400, google_error(400, "INVALID_ARGUMENT", "maxResults must be between 1 and 100."))
        floor = time.time() - WEEK
        recent = [r for r in self.reviews.values() if self._modified(r) >= floor]
        recent.sort(key=self._modified, reverse=True)
        page = [self._translated(r, request.query.get("translationLanguage")) for r in recent[start:start + size]]
        body: dict[str, Any] = {"pageInfo": {"totalResults": len(recent), "resultPerPage": size, "startIndex": start}}
        if page:  # Google leaves out an empty list
            body["reviews"] = page
        if start + size < len(recent):
            body["tokenPagination"] = {"nextPageToken": base64.urlsafe_b64encode(str(start + size).encode()).decode()}
        return Reply(200, body)

    def _reply(self, request: Recorded) -> Reply:
        review = self.reviews.get(request.match["review"])
        if review is None:
            return Reply(404, google_error(404, "NOT_FOUND", "Review not found."))
        text = (request.json() or {}).get("replyText")
        if not isinstance(text, str) or not text.strip():
            return Reply(400, google_error(400, "INVALID_ARGUMENT", "Reply text must not be empty."))
        if len(text) > 350:
            return Reply(400, google_error(400, "INVALID_ARGUMENT", "Reply text is too long: at most 350 "
                                           "characters."))
        edited = {"seconds": str(int(time.time())), "nanos": 0}
        review["comments"] = [c for c in review["comments"] if "developerComment" not in c]
        review["comments"].append({"developerComment": {"text": text, "lastModified": edited}})
        self.replies.append({"reviewId": review["reviewId"], "replyText": text})
        return Reply(200, {"result": {"replyText": text, "lastEdited": edited}})

    @staticmethod
    def _user_comment(review: dict[str, Any]) -> dict[str, Any]:
        return next(c["userComment"] for c in review["comments"] if "userComment" in c)

    @staticmethod
    def _modified(review: dict[str, Any]) -> int:
        return max(int(next(iter(c.values()))["lastModified"]["seconds"]) for c in review["comments"])

    def _translated(self, review: dict[str, Any], language: str | None) -> dict[str, Any]:
        review = copy.deepcopy(review)
        if language:
            user = self._user_comment(review)
            user["originalText"], user["text"] = user["text"], f"[{language}] {user['text']}"
        return review
