"""Fold agents' corrections into the training data, retrain, and promote the new model only if it
is not worse on the validation splits than the model workers use now."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from learning import actions
from learning.models import Correction, ModelVersion

COMPARED = ("sentiment_val_macro_recall", "emotion_val_macro_f1")


class Command(BaseCommand):
    help = "Retrain with agents' corrections; promote only if validation figures are not worse."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA)
        parser.add_argument("--steps", type=int, default=3600)
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--out-dir", default=str(Path(settings.VAR_DIR) / "models"))
        parser.add_argument("--tolerance", type=float, default=0.0,
                            help="promote even if a figure drops by up to this much")
        parser.add_argument("--repeat", type=int, default=3, help="times each correction is sampled")

    def handle(self, *args, **opts):
        from learning.ml import engine, evaluation, multitask, training
        from learning.ml.loading import default_encoder_path

        if not Path(opts["data"], "tweeteval_sentiment").is_dir():
            raise CommandError(f"no training data in {opts['data']} (use --data)")
        corrections = list(Correction.objects.filter(field=Correction.Field.SENTIMENT).exclude(text=""))
        other = Correction.objects.exclude(field=Correction.Field.SENTIMENT).count()
        self.stdout.write(f"{len(corrections)} sentiment corrections folded in; {other} intent or lane corrections "
                          "(intent corrections are already examples of their intent; lanes follow from rules)")
        from learning.ml.classifier import Classifier

        current = actions.get_classifier()
        # Both sides in fp32, as trained: workers may run int8, which would flatter the new model.
        baseline = Classifier(current.model_dir, quantize=False, sentiment_model="", emotion_model="")
        before = evaluation.head_metrics(baseline.engine, opts["data"])
        extra = [(c.text, c.value) for c in corrections] * opts["repeat"]
        recipe = training.Recipe(encoder=default_encoder_path(), data=opts["data"], steps=opts["steps"],
                                 seed=opts["seed"])
        result = training.train(recipe, Path(opts["out_dir"]), extra_sentiment=extra, progress=self.stdout.write)
        after = evaluation.head_metrics(engine.Engine(result["model"], result["tokenizer"]), opts["data"])
        report = {k: {"before": before.get(k), "after": after.get(k)} for k in after}
        self.stdout.write(json.dumps(report, indent=2))
        worse = [k for k in COMPARED if after[k] < before[k] - opts["tolerance"]]
        if worse:
            self.stdout.write(self.style.WARNING(f"not promoted: worse on {', '.join(worse)}"))
            return
        version = f"mt-{timezone.now():%Y%m%d%H%M%S}-c{len(corrections)}"
        path = Path(opts["out_dir"]) / version
        meta = {**result["meta"], "name": current.name, "version": version, "metrics": after,
                "corrections": len(corrections)}
        meta["recipe"]["encoder"] = Path(recipe.encoder).name
        multitask.save(result["model"], result["tokenizer"], path, meta)
        with transaction.atomic():
            ModelVersion.objects.filter(active=True).update(active=False)
            ModelVersion.objects.create(name=current.name, version=version, path=str(path), metrics=report,
                                        active=True, notes=f"{len(corrections)} sentiment corrections")
            Correction.objects.filter(pk__in=[c.pk for c in corrections]).update(used_in_version=version)
        actions.reset_models()
        self.stdout.write(self.style.SUCCESS(f"promoted {version}; workers switch on their next batch"))
