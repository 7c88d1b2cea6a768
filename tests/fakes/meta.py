"""A fake Graph API on FakeProvider: the WhatsApp Cloud API and the Messenger/Instagram Send API.

It checks the bearer token and the documented request shape, answers with the documented
response bodies, and can be scripted to fail the next calls with Graph's error envelope
{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}.

GET /<version>/me?fields=id,name answers the Page the token speaks for (only the fields asked).
`usage(...)` sets the rate-limit headers every answer then carries, as Graph sends them once an
app has made enough calls: X-App-Usage {"call_count", "total_cputime", "total_time"} (percent)
and X-Business-Use-Case-Usage {"<business id>": [{"type", "call_count", "total_cputime",
"total_time", "estimated_time_to_regain_access" (minutes)}]}."""

from __future__ import annotations

import itertools
import json
from collections import deque
from typing import Any

from tests.fakes.http import FakeProvider, Recorded, Reply

WHATSAPP_PATH = r"/(?P<version>v\d+\.\d+)/(?P<phone_number_id>\d+)/messages"
SEND_API_PATH = r"/(?P<version>v\d+\.\d+)/me/messages"
ME_PATH = r"/(?P<version>v\d+\.\d+)/me"
PAGE = {"id": "682498302938465", "name": "Acme Kettles", "category": "Kitchen/Cooking"}


def graph_error(status: int, code: int, message: str, *, subcode: int | None = None, details: str = "",
                headers: dict[str, str] | None = None) -> Reply:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUvW"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return Reply(status, {"error": error}, headers or {})


# Failures as Graph really sends them (status, code, title).
RATE_LIMITED = graph_error(429, 130429, "(#130429) Rate limit hit", headers={"Retry-After": "17"},
                           details="Message failed to send because there were too many messages sent "
                                   "from this phone number in a short period of time")
APP_RATE_LIMITED = graph_error(400, 4, "(#4) Application request limit reached")
WINDOW_CLOSED = graph_error(400, 131047, "(#131047) Re-engagement message",
                            details="Message failed to send because more than 24 hours have passed "
                                    "since the customer last replied to this number.")
MESSENGER_WINDOW_CLOSED = graph_error(400, 10, "(#10) This message is sent outside of allowed window.",
                                      subcode=2018278)
TOKEN_EXPIRED = graph_error(401, 190, "Error validating access token: Session has expired.", subcode=463)
SERVER_ERROR = graph_error(500, 2, "An unexpected error has occurred. Please retry your request later.")


class FakeGraph:
    """Register on a started FakeProvider; point the connector's api_base at `provider.url`."""

    def __init__(self, provider: FakeProvider, token: str = "EAAGtest-token") -> None:
        self.provider = provider
        self.token = token
        self.failures: deque[Reply] = deque()
        self.usage_headers: dict[str, str] = {}
        self._ids = itertools.count(1)
        provider.route("POST", WHATSAPP_PATH)(self._with_usage(self._whatsapp))
        provider.route("POST", SEND_API_PATH)(self._with_usage(self._send_api))
        provider.route("GET", ME_PATH)(self._with_usage(self._me))

    @property
    def url(self) -> str:
        return self.provider.url

    def fail_next(self, *replies: Reply) -> None:
        """The next calls (any endpoint) get these answers, in order."""
        self.failures.extend(replies)

    def usage(self, *, app: dict[str, Any] | None = None, business: dict[str, list[dict[str, Any]]] | None = None,
              raw: dict[str, str] | None = None) -> None:
        """The usage headers every later answer carries (app: X-App-Usage; business: BUC)."""
        self.usage_headers = dict(raw or {})
        if app is not None:
            self.usage_headers["X-App-Usage"] = json.dumps(app)
        if business is not None:
            self.usage_headers["X-Business-Use-Case-Usage"] = json.dumps(business)

    def me_calls(self) -> list[Recorded]:
        return self.provider.calls(ME_PATH)

    def whatsapp_calls(self) -> list[Recorded]:
        return self.provider.calls(WHATSAPP_PATH)

    def template_calls(self) -> list[Recorded]:
        """WhatsApp sends of an approved template (type "template")."""
        return [call for call in self.whatsapp_calls() if call.json().get("type") == "template"]

    def send_api_calls(self) -> list[Recorded]:
        return self.provider.calls(SEND_API_PATH)

    def _with_usage(self, handler):
        def serve(request: Recorded) -> Reply:
            reply = handler(request)
            return Reply(reply.status, reply.body, {**self.usage_headers, **reply.headers})
        return serve

    def _me(self, request: Recorded) -> Reply:
        refused = self._check(request)
        if refused:
            return refused
        fields = request.query.get("fields", "id,name").split(",")
        unknown = [f for f in fields if f not in PAGE]
        if unknown:
            return graph_error(400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type "
                                         "(Page)")
        return Reply(200, {field: PAGE[field] for field in fields})

    def _check(self, request: Recorded) -> Reply | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.failures:
            return self.failures.popleft()
        return None

    def _whatsapp(self, request: Recorded) -> Reply:
        refused = self._check(request)
        if refused:
            return refused
        body = request.json()
        recipient = body.get("to") or body.get("recipient")
        if body.get("type") == "template":  # a template send: its name and language code, as Meta checks them
            template = body.get("template") if isinstance(body.get("template"), dict) else {}
            language = template.get("language") if isinstance(template.get("language"), dict) else {}
            if body.get("messaging_product") != "whatsapp" or not recipient or not template.get("name") \
                    or not language.get("code") or "text" in body:
                return graph_error(400, 100, "(#100) Invalid parameter")
            text = "template"
        else:
            text = (body.get("text") or {}).get("body")
        kind_ok = body.get("type") in ("text", "template")
        if body.get("messaging_product") != "whatsapp" or not recipient or not kind_ok or not text:
            return graph_error(400, 100, "(#100) Invalid parameter")
        if len(text) > 4096:
            return graph_error(400, 100, "(#100) Param text['body'] must be at most 4096 characters long.")
        number = next(self._ids)
        contact = {"input": recipient, **({"wa_id": recipient} if "to" in body else {"user_id": recipient})}
        return Reply(200, {"messaging_product": "whatsapp", "contacts": [contact],
                           "messages": [{"id": f"wamid.HBgLFAKEOUTBOUND{number:08d}AA=="}]})

    def _send_api(self, request: Recorded) -> Reply:
        refused = self._check(request)
        if refused:
            return refused
        body = request.json()
        recipient = (body.get("recipient") or {}).get("id")
        text = (body.get("message") or {}).get("text")
        if not recipient or not text:
            return graph_error(400, 100, "(#100) The parameter recipient is required")
        if body.get("messaging_type") not in {"RESPONSE", "UPDATE", "MESSAGE_TAG"}:
            return graph_error(400, 100, "(#100) Param messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG")
        if len(text) > 2000:
            return graph_error(400, 100, "(#100) Length of param message[text] must be less than or equal to 2000")
        return Reply(200, {"recipient_id": recipient, "message_id": f"m_FAKEOUTBOUND{next(self._ids):08d}"})
