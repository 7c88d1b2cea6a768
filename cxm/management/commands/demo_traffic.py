import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from django.core.management.base import BaseCommand, CommandError

from cxm.demo import DemoTraffic
from listening.connectors.webhook import sign
from listening.models import Connector


class Command(BaseCommand):
    help = "Post a steady flow of demo messages to a running CXM through its generic webhook."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the running server")
        parser.add_argument("--connector", default="demo-web", help="slug of a generic webhook connector")
        # Three a minute: what two demo agents keep up with while they try the console.
        parser.add_argument("--rate", type=float, default=0.05, help="messages per second")
        parser.add_argument("--count", type=int, default=0, help="stop after this many (0: run until stopped)")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server")
        parser.add_argument("--reply-port", type=int, default=0,
                            help="also receive the agents' replies on this port (the demo customers' side)")

    def handle(self, *args, **options):
        if options["rate"] <= 0:
            raise CommandError("--rate must be positive")
        connector = Connector.objects.filter(slug=options["connector"], kind="webhook").first()
        if connector is None:
            raise CommandError(f"no generic webhook connector {options['connector']!r}; run setup_demo first")
        secret = connector.credentials.get("signing_secret")
        if not secret:
            raise CommandError(f"connector {connector.slug!r} has no signing_secret")
        url = f"{options['url'].rstrip('/')}/hooks/{connector.slug}/"
        traffic = DemoTraffic(seed=options["seed"])
        if options["reply_port"]:
            self._receive_replies(options["reply_port"], secret)
        with httpx.Client(timeout=10) as client:
            self._wait_for_server(client, options["url"], options["wait"])
            self.stdout.write(f"demo traffic: {options['rate']}/s to {url}")
            sent = 0
            while not options["count"] or sent < options["count"]:
                started = time.monotonic()
                message = traffic.next()
                body = json.dumps(message.payload).encode()
                headers = {"Content-Type": "application/json", **sign(secret, int(time.time()), body)}
                try:
                    response = client.post(url, content=body, headers=headers)
                    note = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    note = f"error {type(exc).__name__}"
                sent += 1
                self.stdout.write(f"[{note}] {message.lane_hint:11} {message.payload['text'][:70]}")
                time.sleep(max(0.0, 1 / options["rate"] - (time.monotonic() - started)))

    def _wait_for_server(self, client: httpx.Client, base: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                client.get(f"{base.rstrip('/')}/healthz")
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise CommandError(f"server at {base} did not answer within {seconds:.0f}s") from None
                time.sleep(0.5)

    def _receive_replies(self, port: int, secret: str) -> None:
        """Stand in for the customers' side: accept CXM's signed replies and print them."""
        out = self.stdout
        seen: dict[str, str] = {}

        class Replies(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                timestamp = self.headers.get("X-CXM-Timestamp", "")
                expected = sign(secret, int(timestamp), body)["X-CXM-Signature"] if timestamp.isdigit() else ""
                if not expected or not hmac.compare_digest(expected, self.headers.get("X-CXM-Signature", "")):
                    self.send_response(403)
                    self.end_headers()
                    return
                reply = json.loads(body)
                key = self.headers.get("Idempotency-Key", "")
                if key not in seen:  # a retried delivery of the same reply is not shown twice
                    seen[key] = f"demo-out-{uuid.uuid4().hex[:12]}"
                    out.write(f"[reply] to {reply.get('recipient_id')}: {reply.get('text', '')[:70]}")
                answer = json.dumps({"id": seen[key]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        server = ThreadingHTTPServer(("127.0.0.1", port), Replies)
        threading.Thread(target=server.serve_forever, daemon=True).start()
