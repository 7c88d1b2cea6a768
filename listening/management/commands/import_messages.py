"""Import historic messages from a CSV or JSONL file (see listening.importing for the mapping).

    python manage.py import_messages twcs.csv --connector twitter-history --create --channel twitter \\
        --map id=tweet_id --map author=author_id --map sent_at=created_at \\
        --map in_reply_to=in_response_to_tweet_id --map responses=response_tweet_id --map direction=inbound
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from cxm.exceptions import CXMError
from listening.connectors.fileimport import FIELDS, FileImportConnector
from listening.importing import ImportReport, import_file
from listening.models import Connector


class Command(BaseCommand):
    help = "Import messages from a CSV or JSONL file into a connector, in batches; re-runs store nothing twice."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the .csv or .jsonl file")
        parser.add_argument("--connector", required=True, help="slug of the connector to import into")
        parser.add_argument("--create", action="store_true",
                            help="create an import connector with this slug (saving --map/--channel/--date-format "
                                 "as its defaults) if there is none")
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file extension")
        parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                            help=f"map a message field to a column; fields: {', '.join(FIELDS)}")
        parser.add_argument("--channel", help="channel of the messages (default: the connector's)")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--date-format", help="strptime format of sent_at, when not ISO/Unix/Twitter/RFC 2822")
        parser.add_argument("--max-errors", type=int, default=20, help="row errors to print")

    def handle(self, *args, **options):
        mapping = self._mapping(options["map"])
        connector = self._connector(options, mapping)
        try:
            report = import_file(
                connector,
                options["path"],
                fmt=options["format"],
                mapping=mapping,
                batch_size=options["batch_size"],
                channel=options["channel"],
                date_format=options["date_format"],
                max_errors=options["max_errors"],
                progress=self._progress if options["verbosity"] >= 2 else None,
            )
        except OSError as exc:
            raise CommandError(f"cannot read {options['path']}: {exc.strerror or exc}") from None
        except CXMError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{report.rows} rows: {report.created} stored, {report.duplicates} already stored, "
            f"{report.rejected} rejected in {report.seconds:.1f}s ({report.rows_per_second:,.0f} rows/s)"
        )
        for error in report.errors:
            self.stderr.write(f"  {error}")
        if report.rejected > len(report.errors):
            self.stderr.write(f"  ... and {report.rejected - len(report.errors)} more rejected rows")

    def _mapping(self, pairs: list[str]) -> dict[str, str]:
        mapping = {}
        for pair in pairs:
            name, sep, column = pair.partition("=")
            if not sep or not name.strip() or not column.strip():
                raise CommandError(f"--map takes FIELD=COLUMN, got {pair!r}")
            mapping[name.strip()] = column.strip()
        return mapping

    def _connector(self, options: dict, mapping: dict[str, str]) -> Connector:
        slug = options["connector"]
        connector = Connector.objects.filter(slug=slug).first()
        if connector is not None:
            return connector
        if not options["create"]:
            raise CommandError(f"no connector {slug!r}; pass --create to make an import connector")
        if slugify(slug) != slug:
            raise CommandError(f"{slug!r} is not a valid slug (try {slugify(slug)!r})")
        config = {"mapping": mapping}
        if options["channel"]:
            config["channel"] = options["channel"]
        if options["date_format"]:
            config["date_format"] = options["date_format"]
        try:
            config = FileImportConnector.validate_config(config)
        except CXMError as exc:
            raise CommandError(str(exc)) from None
        connector = Connector.objects.create(kind=FileImportConnector.kind, name=slug, slug=slug, config=config)
        self.stdout.write(f"created import connector {slug!r}")
        return connector

    def _progress(self, report: ImportReport) -> None:
        self.stdout.write(f"  {report.rows} rows, {report.created} stored, {report.rejected} rejected")
