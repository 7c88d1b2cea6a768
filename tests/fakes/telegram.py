"""A fake Telegram Bot API on FakeProvider, speaking the documented protocol over real HTTP.

- POST or GET /bot<token>/<method>, parameters as JSON, form or query string, as Telegram takes them;
- every answer is {"ok": true, "result": ...} or {"ok": false, "error_code", "description",
  "parameters"?}, with the HTTP status equal to error_code;
- a wrong token gets 401 Unauthorized, an unknown method 404 Not Found;
- getUpdates honours offset (updates below it are confirmed and forgotten), limit (1-100) and
  timeout (long polling: waits for a push, up to `timeout` seconds);
- sendMessage checks chat_id, text and reply_parameters, and answers with the sent Message;
- getMe answers the bot's User; getWebhookInfo the WebhookInfo (url empty when none is set,
  pending_update_count, last_error_date and last_error_message after a failed delivery), and
  getUpdates is refused with 409 Conflict while a webhook is set, as Telegram does;
- failures are scriptable per method: `fail("getUpdates", 429, retry_after=30)`, or any raw reply.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from typing import Any

from tests.fakes.http import FakeProvider, Recorded, Reply

BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Acme Care", "username": "acme_care_bot"}


class FakeTelegram:
    def __init__(self, provider: FakeProvider, token: str) -> None:
        self.provider = provider
        self.token = token
        self.updates: list[dict[str, Any]] = []  # pending, oldest first
        self.sent: list[dict[str, Any]] = []  # parameters of each accepted sendMessage
        self.known: set[tuple[int, int]] = set()  # (chat_id, message_id) of messages that exist
        self.scripted: dict[str, deque[list]] = {}  # method -> [calls to let through first, reply]
        self._update_ids = itertools.count(483920500)
        self._message_ids = itertools.count(1000)
        self._changed = threading.Condition()
        self.webhook: dict[str, Any] = {"url": "", "has_custom_certificate": False}
        for method in ("GET", "POST"):
            provider.route(method, r"/bot(?P<token>[^/]*)/(?P<method>\w+)")(self._handle)

    @property
    def api_base(self) -> str:
        return self.provider.url

    # --- Scripting -----------------------------------------------------------------------------
    def push(self, update: dict[str, Any], *, renumber: bool = True) -> dict[str, Any]:
        """Queue an update (a fixture), giving it the next update_id unless told otherwise."""
        update = json.loads(json.dumps(update))
        if renumber:
            update["update_id"] = next(self._update_ids)
        for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
            message = update.get(kind)
            if isinstance(message, dict) and isinstance(message.get("chat"), dict):
                self.known.add((message["chat"].get("id"), message.get("message_id")))
        with self._changed:
            self.updates.append(update)
            self._changed.notify_all()
        return update

    def set_webhook(self, url: str, *, last_error_message: str = "", last_error_date: int | None = None) -> None:
        """What setWebhook (and a failed delivery to it) leaves in getWebhookInfo."""
        self.webhook = {"url": url, "has_custom_certificate": False, "max_connections": 40,
                        "ip_address": "203.0.113.7"}
        if last_error_message:
            self.webhook.update(last_error_message=last_error_message,
                                last_error_date=last_error_date or int(time.time()))

    def fail(self, method: str, status: int, description: str = "", *, retry_after: int | None = None,
             times: int = 1) -> None:
        """Answer the next `times` calls of `method` with a Bot API error."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description or str(status)}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        for _ in range(times):
            self.fail_raw(method, Reply(status, body))

    def fail_raw(self, method: str, reply: Reply, *, after: int = 0) -> None:
        """Answer a call of `method` with anything at all (an HTML page, a malformed page), once,
        after letting `after` calls through normally."""
        self.scripted.setdefault(method, deque()).append([after, reply])

    def calls(self, method: str) -> list[Recorded]:
        return self.provider.calls(rf"/bot[^/]*/{method}")

    def params(self, method: str) -> list[dict[str, Any]]:
        return [self._params(call) for call in self.calls(method)]

    # --- Protocol ------------------------------------------------------------------------------
    def _handle(self, request: Recorded) -> Reply:
        assert request.match is not None
        if request.match["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match["method"]
        scripted = self.scripted.get(method)
        if scripted:
            if scripted[0][0] == 0:
                return scripted.popleft()[1]
            scripted[0][0] -= 1
        handler = {"getUpdates": self._get_updates, "sendMessage": self._send_message,
                   "getMe": lambda params: _ok(BOT_USER), "getWebhookInfo": self._webhook_info}.get(method)
        if handler is None:
            return _error(404, "Not Found")
        try:
            params = self._params(request)
        except ValueError:
            return _error(400, "Bad Request: can't parse JSON object")
        return handler(params)

    @staticmethod
    def _params(request: Recorded) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        content_type = request.headers.get("content-type", "")
        if request.body and content_type.startswith("application/json"):
            params.update(json.loads(request.body))
        elif request.body:
            params.update(request.form())
        return params

    def _webhook_info(self, params: dict[str, Any]) -> Reply:
        with self._changed:
            pending = len(self.updates)
        return _ok({**self.webhook, "pending_update_count": pending})

    def _get_updates(self, params: dict[str, Any]) -> Reply:
        if self.webhook["url"]:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
        try:
            offset = int(params.get("offset", 0))
            limit = int(params.get("limit", 100))
            timeout = float(params.get("timeout", 0))
        except (TypeError, ValueError):
            return _error(400, "Bad Request: wrong parameter type")
        if not 1 <= limit <= 100:
            limit = 100  # Telegram clamps rather than refuses
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            # Calling with an offset confirms every update below it: Telegram forgets them.
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            return _ok(self.updates[:limit])

    def _send_message(self, params: dict[str, Any]) -> Reply:
        chat_id, text = params.get("chat_id"), params.get("text")
        if chat_id in (None, ""):
            return _error(400, "Bad Request: chat_id is empty")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(str(text)) > 4096:
            return _error(400, "Bad Request: message is too long")
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            return _error(400, "Bad Request: chat not found")
        replying = params.get("reply_parameters")
        if isinstance(replying, str):  # form-encoded callers send it JSON-serialized
            replying = json.loads(replying)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "date": int(time.time()),
            "text": text,
        }
        if replying:
            target = (int(replying.get("chat_id", chat_id)), int(replying["message_id"]))
            if target in self.known:
                message["reply_to_message"] = {"message_id": target[1], "chat": {"id": target[0]}}
            elif not replying.get("allow_sending_without_reply"):
                return _error(400, "Bad Request: message to be replied not found")
        if "message_thread_id" in params:
            message["message_thread_id"] = int(params["message_thread_id"])
        self.sent.append(params)
        self.known.add((chat_id, message["message_id"]))
        return _ok(message)


def _ok(result: Any) -> Reply:
    return Reply(200, {"ok": True, "result": result})


def _error(status: int, description: str) -> Reply:
    return Reply(status, {"ok": False, "error_code": status, "description": description})
