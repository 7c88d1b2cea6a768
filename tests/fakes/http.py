"""A local fake provider: a real HTTP server on loopback whose routes are plain functions.

Each connector's tests register handlers that speak the provider's documented protocol, then
point the connector's `api_base` at `server.url`. Every request is recorded for assertions."""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    match: re.Match | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A body made as it is sent, chunked (for answers too large to hold); `body` is then unused.
    # Whatever `headers` declare (a Content-Length, say) is sent as given.
    stream: Iterable[bytes] | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return self.body, "application/octet-stream"


Handler = Callable[[Recorded], Reply]


class FakeProvider:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append((method.upper(), re.compile(pattern + r"\Z"), handler))
            return handler

        return register

    def calls(self, pattern: str) -> list[Recorded]:
        regex = re.compile(pattern + r"\Z")
        with self._lock:
            return [r for r in self.requests if regex.match(r.path)]

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with fake._lock:
                    fake.requests.append(recorded)
                reply = fake._dispatch(recorded)
                if reply.stream is not None:
                    self._stream(reply)
                    return
                payload, content_type = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, reply: Reply) -> None:
                self.close_connection = True
                self.send_response(reply.status)
                declared = "content-length" in {name.lower() for name in reply.headers}
                for name, value in {"Content-Type": "application/octet-stream", **reply.headers}.items():
                    self.send_header(name, value)
                if not declared:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in filter(None, reply.stream or ()):  # an empty chunk would end the body
                        self.wfile.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if not declared:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what a capped download does

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _dispatch(self, recorded: Recorded) -> Reply:
        for method, pattern, handler in self.routes:
            match = pattern.match(recorded.path)
            if method == recorded.method and match:
                recorded.match = match
                try:
                    return handler(recorded)
                except Exception as exc:  # surface handler bugs as a 500 the test will see
                    return Reply(500, {"fake_error": repr(exc)})
        return Reply(404, {"error": f"no fake route for {recorded.method} {recorded.path}"})

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScriptedFake:
    """What a provider fake's tests script: `script(endpoint, reply, after=n)` answers the next
    call of that endpoint with `reply` once, after letting `n` calls through normally. The fake
    sets `self.provider` and `self.scripted = {}`, and each route asks `_scripted(endpoint)` first."""

    provider: FakeProvider
    scripted: dict[str, deque[list]]

    def script(self, endpoint: str, reply: Reply, *, after: int = 0) -> None:
        self.scripted.setdefault(endpoint, deque()).append([after, reply])

    def calls(self, pattern: str) -> list[Recorded]:
        return self.provider.calls(pattern)

    def _scripted(self, endpoint: str) -> Reply | None:
        queue = self.scripted.get(endpoint)
        if not queue:
            return None
        if queue[0][0] == 0:
            return queue.popleft()[1]
        queue[0][0] -= 1
        return None
