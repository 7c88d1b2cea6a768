"""Enqueue stored messages for (re-)classification: the unclassified, the failed, those from an
older model version, or all since a date."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from learning import actions, tasks
from learning.models import Classification
from listening.models import Direction, Message


class Command(BaseCommand):
    help = "Queue messages for classification (default: the unclassified)."

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--failed", action="store_true", help="messages whose classification failed")
        group.add_argument("--outdated", action="store_true", help="classified by another model version")
        group.add_argument("--all", action="store_true", help="every inbound message (with --since)")
        parser.add_argument("--since", help="ISO date-time: only messages received after it")
        parser.add_argument("--now", action="store_true", help="classify in this process instead of queueing")

    def handle(self, *args, **opts):
        messages = Message.objects.filter(direction=Direction.INBOUND)
        current = Classification.objects.filter(is_current=True)
        if opts["failed"]:
            messages = messages.filter(pk__in=current.filter(status="failed").values("message_id"))
        elif opts["outdated"]:
            version = actions.get_classifier().version
            messages = messages.filter(pk__in=current.exclude(model_version=version).values("message_id"))
        elif not opts["all"]:
            messages = messages.filter(classifications__isnull=True)
        if opts["since"]:
            since = parse_datetime(opts["since"])
            if since is None:
                raise CommandError(f"--since {opts['since']!r} is not an ISO date-time")
            messages = messages.filter(received_at__gte=since)
        ids = list(messages.order_by("pk").values_list("pk", flat=True))
        force = opts["all"] or opts["failed"]
        if opts["now"]:
            done = sum(len(actions.classify_messages(ids[i : i + 64], force=force).classified)
                       for i in range(0, len(ids), 64))
            self.stdout.write(f"classified {done} messages")
            return
        for start in range(0, len(ids), 64):
            tasks.classify_messages.delay(ids[start : start + 64], force=force)
        self.stdout.write(f"queued {len(ids)} messages")
