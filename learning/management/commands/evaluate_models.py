"""Validation figures of a model (the bundled one by default), as in its model card."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Measure a multi-task model on the validation splits (TweetEval, CLINC150, Banking77 CV)."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA)
        parser.add_argument("--model", default=str(settings.CXM_BUNDLED_MODEL))
        parser.add_argument("--quantize", action="store_true", help="measure the int8 encoder workers use")
        parser.add_argument("--skip-intent-eval", action="store_true")
        parser.add_argument("--seed", type=int, default=13)

    def handle(self, *args, **opts):
        from learning.ml import evaluation
        from learning.ml.classifier import Classifier

        classifier = Classifier(opts["model"], quantize=opts["quantize"], sentiment_model="", emotion_model="")
        metrics = evaluation.head_metrics(classifier.engine, opts["data"])
        if not opts["skip_intent_eval"]:
            metrics.update(evaluation.intent_metrics(classifier.engine, opts["data"], seed=opts["seed"]))
        self.stdout.write(json.dumps({"model": classifier.version, **metrics}, indent=2))
