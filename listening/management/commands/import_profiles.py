"""Import customer profiles from a CSV: tier, time zone, preferred channel and custom attributes,
matched by email or phone (listening.attributes.import_profiles; every value checked by type).

    python manage.py import_profiles crm_export.csv
    (header: email,tier,plan,renewal,...   one row per customer)
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from listening.attributes import import_profiles
from listening.exceptions import PayloadInvalid

MAX_BYTES = 50 * 1024 * 1024


class Command(BaseCommand):
    help = "Set customers' tier, time zone, preferred channel and attributes from a CSV (by email or phone)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the .csv file, with a header row")

    def handle(self, *args, **options):
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        if path.stat().st_size > MAX_BYTES:
            raise CommandError(f"{path} is over {MAX_BYTES // (1024 * 1024)} MB")
        try:
            report = import_profiles(path.read_text(encoding="utf-8-sig"))
        except (PayloadInvalid, UnicodeDecodeError) as error:
            raise CommandError(getattr(error, "reason", None) or str(error)) from None
        for problem in report["problems"]:
            self.stdout.write(f"line {problem['line']}: {problem['reason']}")
        n = report["updated"]
        self.stdout.write(f"{n} customer{'' if n == 1 else 's'} updated, {report['problem_count']} rows refused")
