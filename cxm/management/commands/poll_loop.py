import time

from django.core.management.base import BaseCommand

from insight.tasks import detect_spikes
from listening.tasks import poll_due_connectors
from responses.tasks import check_slas, drain_hold_queues, resend_pending_replies

DETECT_SPIKES_EVERY = 300.0  # seconds, as beat's detect-spikes entry


class Command(BaseCommand):
    help = (
        "Run the periodic tasks in process: poll due connectors, check SLAs, drain hold queues, resend "
        "due replies, and every 5 minutes look for spike alerts. For the zero-setup trial, where no celery beat runs; "
        "the full deployment uses `celery -A cxm beat` instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=15.0, help="seconds between rounds")

    def handle(self, *args, **options):
        # Not the classification sweep: in the trial the web process classifies, and a second
        # copy of the model here would only cost memory.
        detected_at = None
        while True:
            for task in (poll_due_connectors, check_slas, drain_hold_queues, resend_pending_replies):
                task.apply()
            if detected_at is None or time.monotonic() - detected_at >= DETECT_SPIKES_EVERY:
                detected_at = time.monotonic()
                detect_spikes.apply()
            time.sleep(options["every"])
