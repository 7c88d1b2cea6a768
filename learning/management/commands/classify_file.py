"""Classify a file of texts, one per line, into JSONL with every field a worker stores, through
the same classifier, lane and priority code as the workers."""

import json
import sys
from contextlib import ExitStack

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from learning import actions
from learning.models import Intent, PriorityWeights

CHUNK = 256


def _lines(stream):
    """Yield (line number, text, flags) from a binary stream; bad UTF-8 is replaced and flagged."""
    for number, raw in enumerate(stream, start=1):
        raw = raw.rstrip(b"\r\n")
        try:
            yield number, raw.decode("utf-8"), []
        except UnicodeDecodeError:
            yield number, raw.decode("utf-8", "replace"), ["invalid_unicode"]


class Command(BaseCommand):
    help = "Classify INPUT (one text per line, '-' for stdin) and write JSONL to OUTPUT ('-' for stdout)."

    def add_arguments(self, parser):
        parser.add_argument("input")
        parser.add_argument("output")

    def handle(self, *args, input, output, **opts):
        with ExitStack() as files:
            try:
                source = sys.stdin.buffer if input == "-" else files.enter_context(open(input, "rb"))
                sink = sys.stdout if output == "-" else files.enter_context(open(output, "w", encoding="utf-8"))
            except OSError as exc:
                raise CommandError(f"cannot open {exc.filename}: {exc.strerror}") from exc
            count = self._classify(source, sink)
        self.stderr.write(f"classified {count} lines")

    def _classify(self, source, sink) -> int:
        classifier = actions.get_classifier()
        intent_head = actions.current_intent_head(classifier)
        context = {
            "intents": {i.slug: i for i in Intent.objects.all()},
            "weights": PriorityWeights.current(),
            "models": classifier.models_used(intent_head),
        }
        count, chunk = 0, []
        for item in _lines(source):
            chunk.append(item)
            if len(chunk) == CHUNK:
                count += self._write(chunk, classifier, intent_head, context, sink)
                chunk = []
        return count + self._write(chunk, classifier, intent_head, context, sink)

    def _write(self, chunk, classifier, intent_head, context, sink) -> int:
        if not chunk:
            return 0
        results = classifier.classify([text for _, text, _ in chunk], intent_head=intent_head)
        made = timezone.now().isoformat()
        for (number, text, flags), result in zip(chunk, results, strict=True):
            decision, score, factors = actions.assess(result, context["intents"], context["weights"])
            record = {"line": number, "input": text, **result.as_dict(),
                      "flags": sorted(set(result.flags) | set(flags)), "lane": decision.lane,
                      "lane_confidence": round(decision.confidence, 4), "priority": score,
                      "priority_factors": factors, "model_name": classifier.name,
                      "model_version": classifier.version, "models_used": context["models"], "created_at": made}
            record["normalized_text"] = record.pop("text")
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        return len(chunk)
