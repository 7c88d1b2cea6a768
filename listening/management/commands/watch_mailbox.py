"""Store an email connector's mail as it arrives, with IMAP IDLE instead of waiting for a poll.

Each round holds the mailbox in IDLE, then catches up with a poll (everything that came while the
watcher was away): when the server announces new mail, the connector is polled at once (forced:
the watcher is the reason to poll now). IDLE is renewed every --renew-minutes, before the
29 minutes after which servers may drop it (RFC 2177), and each renewal polls once: a server
may announce mail only as IDLE ends, or not at all for mail that landed while it restarted. A
broken connection is reopened after a backoff that doubles with each failure in a row, up to
5 minutes. The regular poll schedule
keeps running beside it; both store each email once (dedupe by Message-ID).
"""

from __future__ import annotations

import random
import time

from django.core.management.base import BaseCommand, CommandError

from listening.exceptions import NotSupported, ProviderError
from listening.models import Connector
from listening.polling import poll_connector

MAX_BACKOFF_SECONDS = 300.0


class Command(BaseCommand):
    help = "Watch an email connector's mailbox with IMAP IDLE and store new mail at once."

    def add_arguments(self, parser):
        parser.add_argument("--connector", required=True, help="slug of an email connector")
        parser.add_argument("--renew-minutes", type=float, default=25.0,
                            help="restart IDLE this often (at most 29: servers drop it after 30)")
        parser.add_argument("--check-seconds", type=float, default=60.0,
                            help="longest wait for the server between checks that the watcher should go on")
        parser.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0: never)")

    def handle(self, *args, **options):
        row = Connector.objects.filter(slug=options["connector"], kind="email").first()
        if row is None:
            raise CommandError(f"no email connector {options['connector']!r}")
        if not 0 < options["renew_minutes"] <= 29:
            raise CommandError("--renew-minutes must be more than 0 and at most 29")
        started = time.monotonic()
        self.deadline = started + options["max_seconds"] if options["max_seconds"] > 0 else None
        failures = 0
        while not self._past_deadline():
            row.refresh_from_db()
            if not row.enabled:
                raise CommandError(f"connector {row.slug!r} is paused")
            try:
                self._watch(row, options["renew_minutes"] * 60, options["check_seconds"])
                failures = 0
            except NotSupported as exc:  # no IDLE on this server: only the poll schedule can help
                raise CommandError(str(exc)) from None
            except ProviderError as exc:
                failures += 1
                self.stderr.write(f"watching failed ({failures} in a row): {exc}")
                self._sleep(backoff_seconds(failures))

    def _watch(self, row: Connector, renew_seconds: float, check_seconds: float) -> None:
        """IDLE until the deadline, polling whenever the server says mail came. Each poll follows
        the start of an IDLE, so mail that lands in between is either announced or polled."""
        with row.get_backend().idle() as watch:
            self.stdout.write("idling")
            self._poll(row, "caught up")
            idle_since = time.monotonic()
            while not self._past_deadline():
                if watch.wait(self._bounded(check_seconds)):
                    self._poll(row, "new mail")
                if time.monotonic() - idle_since >= renew_seconds:
                    # Mail announced while IDLE ends, or landing as it restarts, is polled here.
                    watch.renew()
                    self._poll(row, "renewed")
                    idle_since = time.monotonic()

    def _poll(self, row: Connector, why: str) -> None:
        outcome = poll_connector(row.pk, force=True)
        note = f" ({outcome.error})" if outcome.error else ""
        self.stdout.write(f"{why}: {outcome.created} new{note}")

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _bounded(self, seconds: float) -> float:
        if self.deadline is None:
            return seconds
        return max(0.1, min(seconds, self.deadline - time.monotonic()))

    def _sleep(self, seconds: float) -> None:
        time.sleep(self._bounded(seconds) if self.deadline is not None else seconds)


def backoff_seconds(failures: int) -> float:
    """Doubling with jitter after failures, up to 5 minutes."""
    return min(MAX_BACKOFF_SECONDS, 2.0 ** failures) * random.uniform(0.8, 1.2)
