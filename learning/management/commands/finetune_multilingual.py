"""Fine-tune the top layers of multilingual-e5-small and its sentiment head on UMSAB train
(learning/ml/e5_finetune.py): the frozen bottom runs once and is cached, then only the top layers
train. Writes tuned.safetensors (fp16) and tuned.json with the per-language validation figures."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Fine-tune the multilingual reader's top layers for sentiment (UMSAB train; val measured once)."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=settings.CXM_TRAINING_DATA, help="folder of the datasets")
        parser.add_argument("--out", default=str(Path(settings.VAR_DIR) / "e5-tuned"))
        parser.add_argument("--cache", default=str(Path(settings.VAR_DIR) / "e5cache"),
                            help="where the frozen bottom's hidden states are kept (fp16)")
        parser.add_argument("--cut", type=int, default=10, help="layers below this stay frozen (12 in all)")
        parser.add_argument("--epochs", type=int, default=3)
        parser.add_argument("--lr", type=float, default=3e-5)
        parser.add_argument("--per-language", type=int, default=0, help="train tweets per language (0: all)")
        parser.add_argument("--seed", type=int, default=13)

    def handle(self, *args, **opts):
        from learning.ml import e5_finetune

        if not Path(opts["data"], "umsab_sentiment").is_dir():
            raise CommandError(f"no UMSAB data in {opts['data']} (use --data)")
        if not 0 < opts["cut"] < 12:
            raise CommandError("--cut must be between 1 and 11")
        meta = e5_finetune.finetune(opts["data"], opts["out"], opts["cache"], cut=opts["cut"], epochs=opts["epochs"],
                                    lr=opts["lr"], per_language=opts["per_language"] or None, seed=opts["seed"],
                                    progress=self.stdout.write)
        for key, value in sorted(meta["metrics"].items()):
            self.stdout.write(f"{key}: {value}")
        self.stdout.write(self.style.SUCCESS(f"epoch {meta['epoch']} kept; saved to {opts['out']}"))
