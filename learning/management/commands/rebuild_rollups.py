"""Recompute the dashboards' rollups from the raw tables, or check them against a recount.

Run once after upgrading to a release that adds rollups (existing messages are not in them until
then), and whenever `--verify` reports a difference.
"""

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from learning import rollups


class Command(BaseCommand):
    help = "Rebuild the dashboard rollups from the raw tables (or --verify the last N days against a recount)."

    def add_arguments(self, parser):
        parser.add_argument("--verify", type=int, metavar="DAYS", default=0,
                            help="Only compare the rollups of the last DAYS whole days with a recount; change nothing.")

    def handle(self, *args, verify: int, **options):
        if verify:
            today = rollups.local_day(timezone.now())
            start, end = rollups.day_start(today - timedelta(days=verify)), rollups.day_start(today)
            differences = rollups.verify_window(start, end)
            for key, (stored, expected) in sorted(differences.items(), key=str)[:20]:
                self.stdout.write(f"{key}: stored {stored}, recount {expected}")
            if differences:
                raise CommandError(f"{len(differences)} rollup rows differ from a recount; run rebuild_rollups")
            self.stdout.write(self.style.SUCCESS(f"Rollups of the last {verify} days match a recount."))
            return
        started = time.perf_counter()
        counts = rollups.rebuild()
        took = time.perf_counter() - started
        care = f", {counts['care_rows']} care rollup rows" if "care_rows" in counts else ""
        self.stdout.write(self.style.SUCCESS(f"Rebuilt {counts['rows']} rollup rows{care} and {counts['moods']} "
                                             f"conversation moods in {took:.1f} s."))
