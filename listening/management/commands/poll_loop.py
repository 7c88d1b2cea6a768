import time

from django.core.management.base import BaseCommand

from listening.tasks import poll_due_connectors


class Command(BaseCommand):
    help = (
        "Poll due connectors every few seconds, in process. For the zero-setup trial, where no "
        "celery beat runs; the full deployment uses `celery -A cxm beat` instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=15.0, help="seconds between rounds")

    def handle(self, *args, **options):
        while True:
            poll_due_connectors.apply()
            time.sleep(options["every"])
