"""Fit the multilingual reader's sentiment and emotion heads and write them with their card."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Fit the heads of the multilingual reader (multilingual-e5-small) on the public datasets."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA, help="folder of the datasets")
        parser.add_argument("--out", default=settings.CXM_MULTILINGUAL_HEADS or "learning/pretrained/cxm-e5-heads")
        parser.add_argument("--cache", default=str(Path(settings.VAR_DIR) / "e5-cache"),
                            help="where embeddings are kept between runs ('' for none)")
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--ngrams-only", action="store_true",
                            help="refit only the n-gram sentiment head over the embedding heads in --out "
                                 "(learning/pretrained/cxm-e5-heads-ngrams is made so)")

    def handle(self, *args, **opts):
        from learning.ml import multilingual_training

        if not Path(opts["data"], "umsab_sentiment").is_dir():
            raise CommandError(f"no UMSAB data in {opts['data']} (use --data)")
        meta = multilingual_training.train(opts["data"], opts["out"], opts["cache"] or None, opts["seed"],
                                           progress=self.stdout.write, ngrams_only=opts["ngrams_only"])
        for key, value in sorted(meta["metrics"].items()):
            self.stdout.write(f"{key}: {value}")
        self.stdout.write(f"scored languages: {', '.join(meta['scored_languages'])}")
        self.stdout.write(self.style.SUCCESS(f"saved {meta['version']} to {opts['out']}"))
