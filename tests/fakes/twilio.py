"""A fake Twilio Messages API on FakeProvider, speaking the documented protocol over real HTTP.

- POST /2010-04-01/Accounts/<AccountSid>/Messages.json, HTTP basic auth AccountSid:AuthToken,
  form-encoded To, From or MessagingServiceSid, Body and StatusCallback;
- a wrong account or token gets 401 (error 20003); another account's path 404 (20404);
- a missing or malformed To, a missing sender, an empty or over-1600-character Body, From and To
  on different channels or a bad StatusCallback get 400 with Twilio's code and message;
- a message is answered 201 with the Message resource (tests/fixtures/twilio/message_created.json);
- every error is Twilio's envelope {"code", "message", "more_info", "status"};
- GET /2010-04-01/Accounts/<AccountSid>.json answers the Account resource ({"sid", "friendly_name",
  "status": active | suspended | closed, "type": Full | Trial, "auth_token", ...}: Twilio really
  returns the auth token in it);
- `fail_next(...)` scripts the next answers; `status_callback(sid, state)` builds the parameters
  Twilio would POST to the message's StatusCallback URL.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.http import FakeProvider, Recorded, Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twilio"
MESSAGES_PATH = r"/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json"
ACCOUNT_PATH = r"/2010-04-01/Accounts/(?P<account>[^/]+)\.json"
NUMBER_RE = re.compile(r"(?:whatsapp:)?\+?[0-9]{3,15}")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def twilio_error(code: int, status: int | None = None, message: str = "",
                 headers: dict[str, str] | None = None) -> Reply:
    """An error in Twilio's envelope: a recorded one (error_<code>.json) or made up here."""
    path = FIXTURES / f"error_{code}.json"
    body = json.loads(path.read_text()) if path.exists() else {
        "code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    if message:
        body["message"] = message
    return Reply(int(body["status"]), body, headers or {})


class FakeTwilio:
    """Register on a started FakeProvider; point the connector's api_base at `url`."""

    def __init__(self, provider: FakeProvider, account_sid: str, auth_token: str) -> None:
        self.provider = provider
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sent: list[dict[str, Any]] = []  # the Message resources created
        self.failures: deque[Reply] = deque()
        self.account = {"friendly_name": "Acme Care", "status": "active", "type": "Full"}
        self._ids = itertools.count(1)
        provider.route("POST", MESSAGES_PATH)(self._create_message)
        provider.route("GET", ACCOUNT_PATH)(self._fetch_account)

    @property
    def url(self) -> str:
        return self.provider.url

    def fail_next(self, *replies: Reply) -> None:
        """The next calls get these answers, in order (after authentication)."""
        self.failures.extend(replies)

    def calls(self) -> list[Recorded]:
        return self.provider.calls(MESSAGES_PATH)

    def status_callback(self, sid: str, state: str, *, error_code: str = "") -> dict[str, str]:
        """What Twilio POSTs to a sent message's StatusCallback when it reaches `state`."""
        message = next(m for m in self.sent if m["sid"] == sid)
        params = fixture("status_callback") | {
            "SmsSid": sid, "MessageSid": sid, "SmsStatus": state, "MessageStatus": state,
            "To": message["to"], "From": message["from"] or "", "AccountSid": self.account_sid,
        }
        if message["to"].startswith("whatsapp:"):
            params |= {"ChannelPrefix": "whatsapp", "ChannelToAddress": message["to"].removeprefix("whatsapp:"),
                       "ChannelInstallSid": "XE0123456789abcdef0123456789abcdef", "StructuredMessage": "false"}
        if error_code:
            params["ErrorCode"] = error_code
        return params

    # --- Protocol ------------------------------------------------------------------------------
    def _create_message(self, request: Recorded) -> Reply:
        assert request.match is not None
        if not self._authenticated(request):
            return twilio_error(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match["account"] != self.account_sid:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        if self.failures:
            return self.failures.popleft()
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return twilio_error(21602, 400, "Message body is required.")  # JSON is not read at all
        form = request.form()
        refusal = self._refusal(form)
        if refusal is not None:
            return refusal
        return Reply(201, self._resource(form))

    def _fetch_account(self, request: Recorded) -> Reply:
        assert request.match is not None
        if not self._authenticated(request):
            return twilio_error(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match["account"] != self.account_sid:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        if self.failures:
            return self.failures.popleft()
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        return Reply(200, {
            **self.account, "sid": self.account_sid, "owner_account_sid": self.account_sid,
            "auth_token": self.auth_token, "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
            "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000", "uri": f"{base}.json",
            "subresource_uris": {"messages": f"{base}/Messages.json", "balance": f"{base}/Balance.json"}})

    def _authenticated(self, request: Recorded) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return scheme == "Basic" and (user, password) == (self.account_sid, self.auth_token)

    @staticmethod
    def _refusal(form: dict[str, str]) -> Reply | None:
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return twilio_error(21604, 400, "A 'To' phone number is required.")
        if not NUMBER_RE.fullmatch(to):
            return twilio_error(21211, message=f"Invalid 'To' Phone Number: {to[:20]}")
        if not sender and not form.get("MessagingServiceSid"):
            return twilio_error(21603, 400, "A 'From' phone number is required.")
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return twilio_error(21910, 400, "Invalid From and To pair. From and To should be of the same channel")
        if not form.get("Body", "").strip():
            return twilio_error(21602, 400, "Message body is required.")
        if len(form["Body"]) > 1600:
            return twilio_error(21617)
        callback = form.get("StatusCallback")
        if callback is not None and urlsplit(callback).scheme not in ("http", "https"):
            return twilio_error(21609, 400, "Invalid StatusCallback url")
        return None

    def _resource(self, form: dict[str, str]) -> dict[str, Any]:
        number = next(self._ids)
        prefix = "MM" if form.get("MediaUrl") else "SM"
        sid = f"{prefix}{number:032x}"
        resource = copy.deepcopy(fixture("message_created")) | {
            "sid": sid, "to": form["To"], "from": form.get("From"), "body": form["Body"],
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "status": "accepted" if not form.get("From") else "queued",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        self.sent.append(resource | {"status_callback": form.get("StatusCallback")})
        return resource
