"""Read a Mastodon connector's streaming API and store what arrives, as polling would.

Each round first polls the connector when a poll is due (catching up from its since_id cursor on
everything the stream missed while it was down), then reads the stream until the server closes it or it fails,
storing each mention or status through ingest_messages. Stored ids dedupe, so polling and
streaming may overlap freely; the stream never moves the cursor, the polls do.
"""

from __future__ import annotations

import random
import time

from django.core.management.base import BaseCommand, CommandError

from listening.actions import ingest_messages
from listening.exceptions import ProviderError
from listening.models import Connector
from listening.polling import poll_connector

MAX_BACKOFF_SECONDS = 300.0


class Command(BaseCommand):
    help = "Store a Mastodon connector's mentions (or a hashtag) live from the streaming API."

    def add_arguments(self, parser):
        parser.add_argument("--connector", required=True, help="slug of a mastodon connector")
        parser.add_argument("--stream", default="user", help='"user" (mentions) or "hashtag:<tag>"')
        parser.add_argument("--rounds", type=int, default=0, help="stop after this many connections (0: never)")
        parser.add_argument("--read-timeout", type=float, default=90.0,
                            help="seconds of silence (Mastodon sends heartbeats) before reconnecting")

    def handle(self, *args, **options):
        row = Connector.objects.filter(slug=options["connector"], kind="mastodon").first()
        if row is None:
            raise CommandError(f"no mastodon connector {options['connector']!r}")
        try:
            row.get_backend().stream_url(options["stream"])
        except Exception as exc:  # ConfigInvalid: say which flag is wrong before looping
            raise CommandError(str(exc)) from None
        failures, rounds = 0, 0
        while not options["rounds"] or rounds < options["rounds"]:
            rounds += 1
            row.refresh_from_db()
            if not row.enabled:
                raise CommandError(f"connector {row.slug!r} is paused")
            # Not forced: the poll lease and any rate-limit backoff still hold; when a poll is not
            # due, the regular schedule (which keeps running beside the stream) catches up instead.
            caught_up = poll_connector(row.pk)
            note = f" ({caught_up.error})" if caught_up.error else ""
            self.stdout.write(f"caught up by polling: {caught_up.created} new{note}")
            try:
                stored = self._read(row, options["stream"], options["read_timeout"])
                failures = 0
                self.stdout.write(f"stream closed after {stored} new")
            except ProviderError as exc:
                failures += 1
                self.stderr.write(f"stream failed ({failures} in a row): {exc}")
            if not options["rounds"] or rounds < options["rounds"]:
                time.sleep(backoff_seconds(failures))

    def _read(self, row: Connector, stream: str, read_timeout: float) -> int:
        stored = 0
        for message in row.get_backend().stream(stream, timeout=read_timeout):
            stored += ingest_messages(row, [message]).created
        return stored


def backoff_seconds(failures: int) -> float:
    """A second after a clean close; doubling with jitter after failures, up to 5 minutes."""
    return min(MAX_BACKOFF_SECONDS, 2.0 ** failures) * random.uniform(0.8, 1.2)
