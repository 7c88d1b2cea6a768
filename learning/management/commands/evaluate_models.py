"""Validation figures of a model (the bundled one by default), as in its model card, and the care
figures: where real and hand-labelled customer messages land (learning/ml/lane_evaluation.py)."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Measure a multi-task model on the validation splits (TweetEval, CLINC150, Banking77 CV, UMSAB "
            "per language) and on care traffic (the labelled care set, answered tweets, airline tweets).")

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA)
        parser.add_argument("--model", default=str(settings.CXM_BUNDLED_MODEL))
        parser.add_argument("--quantize", action="store_true", help="measure the int8 encoder (default fp32)")
        parser.add_argument("--runtime", choices=["onnx", "torch"], default="torch",
                            help="where the encoder runs (default torch)")
        parser.add_argument("--as-workers", action="store_true",
                            help="measure the encoder as workers run it: CXM_ENCODER_RUNTIME and CXM_QUANTIZE")
        parser.add_argument("--skip-intent-eval", action="store_true")
        parser.add_argument("--skip-care-eval", action="store_true")
        parser.add_argument("--care-set", default="", help="a care set in JSONL (default: the shipped one)")
        parser.add_argument("--seed", type=int, default=13)

    def handle(self, *args, **opts):
        from learning.ml import evaluation
        from learning.ml.classifier import Classifier

        runtime, quantize = opts["runtime"], opts["quantize"]
        if opts["as_workers"]:
            runtime, quantize = settings.CXM_ENCODER_RUNTIME, settings.CXM_QUANTIZE
        classifier = Classifier(opts["model"], quantize=quantize, runtime=runtime, sentiment_model="", emotion_model="")
        metrics = evaluation.head_metrics(classifier.engine, opts["data"])
        if not opts["skip_intent_eval"]:
            metrics.update(evaluation.intent_metrics(classifier.engine, opts["data"], seed=opts["seed"]))
        metrics.update(evaluation.umsab_metrics(classifier, opts["data"]))
        if not opts["skip_care_eval"]:
            metrics.update(self._care(classifier, opts))
        self.stdout.write(json.dumps({"model": classifier.version, **metrics}, indent=2, ensure_ascii=False))

    def _care(self, classifier, opts) -> dict:
        from learning import actions
        from learning.ml import lane_evaluation
        from learning.ml.care_eval import load_care_set
        from learning.models import Intent, PriorityWeights

        intent_head = actions.current_intent_head(classifier)
        intents, weights = {i.slug: i for i in Intent.objects.all()}, PriorityWeights.current()

        def assess(result, conversation_lane="", addressed=True):
            return actions.assess(result, intents, weights, conversation_lane=conversation_lane,
                                  addressed=addressed)[0]

        rows = load_care_set(opts["care_set"] or None)
        figures = lane_evaluation.care_set_figures(classifier, intent_head, assess, rows)
        figures.update(lane_evaluation.answered_to_noise(classifier, intent_head, assess, opts["data"]))
        figures.update(lane_evaluation.airline_figures(classifier, intent_head, assess, opts["data"]))
        return figures
