"""Import signals from a CSV file: `manage.py import_signals export.csv [--source crm]`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from listening.exceptions import ConfigInvalid
from listening.signal_import import import_signals_file


class Command(BaseCommand):
    help = "Import signals (device errors, payments, orders, NPS...) from a CSV file; see README, Signals."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--source", default="csv", help="Dedupe scope of the ids (default csv).")

    def handle(self, *args, path: str, source: str, **options) -> None:
        try:
            report = import_signals_file(path, source=source[:80])
        except (ConfigInvalid, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{report.rows} rows: {report.created} stored, {report.duplicates} duplicates, "
                          f"{report.rejected} rejected")
        for error in report.errors:
            self.stdout.write(f"  {error}")
