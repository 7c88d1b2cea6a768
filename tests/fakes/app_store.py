"""A fake App Store Connect API (customer reviews and responses) on FakeProvider, over real HTTP.

- every call needs "Authorization: Bearer <JWT>": the ES256 signature is VERIFIED with the API
  key's public key, the header's kid must be the key id, iss the issuer id, aud
  "appstoreconnect-v1", and exp at most 20 minutes after iat; else 401 NOT_AUTHORIZED, as Apple
  answers it. Errors are {"errors": [{"id", "status", "code", "title", "detail"}]}.
- every answer carries `X-Rate-Limit: user-hour-lim:3600;user-hour-rem:<n>;`, one less per call.
- GET /v1/apps/<id>: the app's name and bundle id.
- GET /v1/apps/<id>/customerReviews: sort (createdDate, -createdDate), limit (at most 200),
  include=response (relationships.response.data and the responses in `included`), paging by an
  opaque `cursor` in links.next (an absolute URL), meta.paging.total.
- POST /v1/customerReviewResponses: creates the review's response, or replaces the one it has
  (same id, new lastModifiedDate), answering 201; a responseBody over 5,970 characters or a body
  of the wrong shape gets 409 ENTITY_ERROR, an unknown review 404.
- any endpoint's next answers can be scripted: `script("reviews", Reply(...), after=0)`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from tests.fakes.http import FakeProvider, Recorded, Reply, ScriptedFake

NOT_AUTHORIZED = {"status": "401", "code": "NOT_AUTHORIZED", "title": "Authentication credentials are missing or "
                  "invalid.", "detail": "Provide a properly configured and signed bearer token, and make sure that "
                  "it has not expired. Learn more about Generating Tokens for API Requests "
                  "https://developer.apple.com/go/?id=api-generating-tokens"}


def apple_error(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"errors": [{"id": str(uuid.uuid4()), "status": str(status), "code": code, "title": title,
                        "detail": detail, **extra}]}


class FakeAppStore(ScriptedFake):
    def __init__(self, provider: FakeProvider, *, public_key: Any, key_id: str, issuer_id: str, app_id: str,
                 app_name: str = "Acme Coffee", bundle_id: str = "com.acme.coffee") -> None:
        self.provider = provider
        self.public_key = public_key
        self.key_id, self.issuer_id = key_id, issuer_id
        self.app = {"id": app_id, "name": app_name, "bundleId": bundle_id}
        self.reviews: list[dict[str, Any]] = []  # customerReviews resources without relationships
        self.responses: dict[str, dict[str, Any]] = {}  # review id -> customerReviewResponses resource
        self.remaining = 3600
        self.tokens: list[str] = []  # verified bearer tokens, in order
        self.scripted: dict[str, deque[list]] = {}
        self.clock = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # response times: a second per response
        self._ids = itertools.count(1)
        provider.route("GET", r"/v1/apps/(?P<app>[^/]+)")(self._api("app", self._app))
        provider.route("GET", r"/v1/apps/(?P<app>[^/]+)/customerReviews")(self._api("reviews", self._reviews))
        provider.route("POST", r"/v1/customerReviewResponses")(self._api("respond", self._respond))

    @property
    def url(self) -> str:
        return self.provider.url

    # --- Scripting -----------------------------------------------------------------------------
    def add_review(self, resource: dict[str, Any], response: dict[str, Any] | None = None) -> dict[str, Any]:
        resource = copy.deepcopy(resource)
        resource.pop("relationships", None)
        self.reviews.append(resource)
        if response is not None:
            self.responses[resource["id"]] = copy.deepcopy(response)
        return resource

    # --- Protocol ------------------------------------------------------------------------------
    def _verified(self, request: Recorded) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return False
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return False
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], audience="appstoreconnect-v1",
                                issuer=self.issuer_id, options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.PyJWTError:
            return False
        if claims["exp"] - claims["iat"] > 1200:  # Apple refuses tokens that live over 20 minutes
            return False
        self.tokens.append(token)
        return True

    def _api(self, endpoint: str, handler):
        def serve(request: Recorded) -> Reply:
            self.remaining = max(0, self.remaining - 1)
            limit = {"x-rate-limit": f"user-hour-lim:3600;user-hour-rem:{self.remaining};"}
            if not self._verified(request):
                return Reply(401, {"errors": [{"id": str(uuid.uuid4()), **NOT_AUTHORIZED}]}, limit)
            reply = self._scripted(endpoint) or handler(request)
            return Reply(reply.status, reply.body, {**limit, **reply.headers})

        return serve

    def _unknown_app(self, app_id: str) -> Reply:
        return Reply(404, apple_error(404, "NOT_FOUND", "The specified resource does not exist",
                                      f"There is no resource of type 'apps' with id '{app_id}'"))

    def _app(self, request: Recorded) -> Reply:
        if request.match["app"] != self.app["id"]:
            return self._unknown_app(request.match["app"])
        return Reply(200, {"data": {"type": "apps", "id": self.app["id"], "attributes": {
            "name": self.app["name"], "bundleId": self.app["bundleId"]},
            "links": {"self": f"{self.url}/v1/apps/{self.app['id']}"}},
            "links": {"self": f"{self.url}/v1/apps/{self.app['id']}"}})

    def _reviews(self, request: Recorded) -> Reply:
        app_id, query = request.match["app"], request.query
        if app_id != self.app["id"]:
            return self._unknown_app(app_id)
        sort, include = query.get("sort", "createdDate"), query.get("include")
        limit = int(query.get("limit", "50")) if query.get("limit", "50").isdigit() else 0
        if sort not in ("createdDate", "-createdDate") or not 1 <= limit <= 200 or include not in (None, "response"):
            return Reply(400, apple_error(400, "PARAMETER_ERROR.INVALID", "A parameter has an invalid value",
                                          f"'{limit}' is not a valid value for the parameter 'limit'"))
        start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query else 0
        ordered = sorted(self.reviews, key=lambda r: datetime.fromisoformat(r["attributes"]["createdDate"]),
                         reverse=sort.startswith("-"))
        page = ordered[start:start + limit]
        base = f"{self.url}/v1/apps/{app_id}/customerReviews"
        body: dict[str, Any] = {"data": [self._with_response(r, include) for r in page],
                                "links": {"self": base}, "meta": {"paging": {"total": len(ordered), "limit": limit}}}
        if include:
            body["included"] = [self.responses[r["id"]] for r in page if r["id"] in self.responses]
        if start + limit < len(ordered):
            cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            body["links"]["next"] = f"{base}?cursor={cursor}&limit={limit}&sort={sort}" + (
                f"&include={include}" if include else "")
        return Reply(200, body)

    def _with_response(self, review: dict[str, Any], include: str | None) -> dict[str, Any]:
        related = {"links": {"self": f"{self.url}/v1/customerReviews/{review['id']}/relationships/response",
                             "related": f"{self.url}/v1/customerReviews/{review['id']}/response"}}
        if include:
            response = self.responses.get(review["id"])
            related["data"] = {"type": "customerReviewResponses", "id": response["id"]} if response else None
        return {**copy.deepcopy(review), "relationships": {"response": related}}

    def _respond(self, request: Recorded) -> Reply:
        data = (request.json() or {}).get("data") or {}
        body = (data.get("attributes") or {}).get("responseBody")
        review = ((data.get("relationships") or {}).get("review") or {}).get("data") or {}
        if data.get("type") != "customerReviewResponses" or review.get("type") != "customerReviews":
            return Reply(409, apple_error(409, "ENTITY_ERROR.INCLUDED.INVALID", "The provided entity is invalid",
                                          "The request entity has an invalid type"))
        if not isinstance(body, str) or not body.strip():
            return Reply(409, apple_error(409, "ENTITY_ERROR.ATTRIBUTE.REQUIRED", "The provided entity is missing "
                                          "a required attribute", "You must provide a value for the attribute "
                                          "'responseBody' with this request"))
        if len(body) > 5970:
            return Reply(409, apple_error(409, "ENTITY_ERROR.ATTRIBUTE.INVALID", "An attribute value is invalid.",
                                          "The attribute 'responseBody' exceeds the maximum length of 5970.",
                                          source={"pointer": "/data/attributes/responseBody"}))
        if review.get("id") not in {r["id"] for r in self.reviews}:
            return Reply(404, apple_error(404, "NOT_FOUND", "The specified resource does not exist",
                                          f"There is no resource of type 'customerReviews' with id "
                                          f"'{review.get('id')}'"))
        self.clock += timedelta(seconds=1)
        existing = self.responses.get(review["id"])
        response_id = existing["id"] if existing else f"7a1c{next(self._ids):04d}-0000-4000-8000-{review['id'][-12:]}"
        modified = self.clock.isoformat().replace("+00:00", "Z")
        response = {"type": "customerReviewResponses", "id": response_id,
                    "attributes": {"responseBody": body, "lastModifiedDate": modified, "state": "PENDING_PUBLISH"}}
        self.responses[review["id"]] = response
        return Reply(201, {"data": {**response, "links": {"self": f"{self.url}/v1/customerReviewResponses/"
                                                                  f"{response['id']}"}},
                           "links": {"self": f"{self.url}/v1/customerReviewResponses"}})
