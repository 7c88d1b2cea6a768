#!/usr/bin/env python
"""Classification benchmark: CXM's batched multi-task path against three naive pipelines.

    python bench/classify.py [--messages 2000] [--naive-messages 300] [--repeats 3] [--batch 64]

What it does, in one run (see bench/README.md):
  1. sets up Django on a throwaway SQLite database in a temp dir (DEBUG=1), migrated, so the
     default intents and their examples are there; adds a few topic terms (brand, competitor,
     products);
  2. reads realistic customer messages: the first N inbound tweets to @SpotifyCares from
     CXM_TRAINING_DATA/twcs_spotifycares_sample/support_requests.csv (the demo traffic of
     cxm/demo.py when the file is missing);
  3. CXM paths: the encoder on torch fp32 (the reference), torch int8, ONNX Runtime fp32 and
     ONNX Runtime int8 (`--paths`), each marked "(workers)" when it is what the settings run:
     `Classifier.classify` on batches of CXM_CLASSIFY_BATCH (64) messages (sentiment, emotion,
     intent through the fitted intent head, language, topic terms, entities), then lane and
     priority with `learning.actions.assess`; passes interleaved; time per batch, p50 and p95,
     CPU time per message;
  4. naive baseline: three independent fp32 copies of the model, one message at a time, each copy
     with its own tokenization and encoder pass (copy 1 sentiment, copy 2 emotion, copy 3 pooled
     embedding -> intent probabilities with the same intent head), plus the same language, terms,
     lane and priority work;
  5. checks that the paths agree with torch fp32 (naive must give the same labels; the others show
     what their runtime and precision change in labels and lanes), prints a table, the goal check
     (workers' path: 250 and 450 msgs/s, 5x naive, lanes 97%) and, as the very last line,
     `BENCH classify {json}`.

Model load time is excluded from throughput and reported separately. Every path is warmed up
before it is timed. Torch and ONNX Runtime use all cores (or --threads for torch).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# As cxm/__init__.py does for every process, before torch loads: idle OpenMP threads sleep instead of
# spinning on cores other processes need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

SAMPLE = Path("twcs_spotifycares_sample") / "support_requests.csv"
GOAL_MSGS_PER_S = 250  # issue 13
GOAL_FAST_MSGS_PER_S = 450  # issue 19
GOAL_LANES = 0.97  # share of messages in the same lane as torch fp32 (issue 13)
GOAL_RATIO = 5.0
WARMUP_BATCHES = 2
NAIVE_WARMUP = 10
# Topic terms an admin of a music-streaming brand would set up.
TERMS = [
    ("Spotify", "brand", ["@SpotifyCares", "SpotifyCares", "Spotify app"]),
    ("Apple Music", "competitor", ["AppleMusic", "iTunes"]),
    ("YouTube Music", "competitor", ["YT Music"]),
    ("Premium", "product", ["Spotify Premium", "premium account", "premium subscription"]),
    ("Family plan", "product", ["Premium Family", "family account"]),
    ("Student discount", "product", ["student plan", "Premium for Students"]),
    ("Shuffle", "topic", ["shuffle play"]),
    ("Offline mode", "topic", ["offline", "downloaded songs", "downloads"]),
    ("Billing", "topic", ["charged", "refund", "payment"]),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages through the CXM paths (default 2000)")
    parser.add_argument("--naive-messages", type=int, default=300,
                        help="messages through the naive baseline, which is slow (default 300)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes over the messages per CXM path; throughput is their median (default 3)")
    parser.add_argument("--batch", type=int, default=None,
                        help="messages per classify call (default CXM_CLASSIFY_BATCH)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"the CSV of messages (default CXM_TRAINING_DATA/{SAMPLE})")
    parser.add_argument("--model", type=Path, default=None,
                        help="model directory (default CXM_BUNDLED_MODEL)")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS),
                        help="encoder runtimes and precisions to time (default: all; torch-fp32, the "
                             "reference, always runs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own default, all cores)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.messages < 1 or args.naive_messages < 1 or args.repeats < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--messages, --naive-messages, --repeats and --batch must be at least 1")
    return args


def setup_django(tmp: Path) -> None:
    """Product settings on a fresh SQLite database in `tmp`, migrated (default intents included)."""
    for key in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(key, None)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "cxm.settings", "DEBUG": "1", "CXM_VAR_DIR": str(tmp),
                       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from learning.models import Term

    for name, kind, synonyms in TERMS:
        Term.objects.create(name=name, kind=kind, synonyms=synonyms)


# --- Texts --------------------------------------------------------------------------------------
def load_texts(count: int, path: Path) -> tuple[list[str], str]:
    """The first `count` inbound message texts of the sample (quoted newlines kept), or demo
    traffic when the file is missing. Returns the texts and where they came from."""
    texts: list[str] = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("inbound", "True") == "True" and (row.get("text") or "").strip():
                    texts.append(row["text"])
                    if len(texts) == count:
                        break
        if texts:
            source = f"{path} (first {len(texts)} inbound rows)"
            read = len(texts)
            while len(texts) < count:  # a sample shorter than asked for is read again
                texts.append(texts[len(texts) % read])
            return texts, source
    from cxm.demo import DemoTraffic

    demo = DemoTraffic(seed=7)
    return [demo.next().payload["text"] for _ in range(count)], f"cxm/demo.py (seed 7; {path} missing)"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


# --- CXM paths ----------------------------------------------------------------------------------
# Where and in what precision the encoder runs: (CXM_ENCODER_RUNTIME, CXM_QUANTIZE).
PATHS = {
    "torch-fp32": ("torch", False),  # the reference every other path is compared with
    "torch-int8": ("torch", True),
    "onnx-fp32": ("onnx", False),
    "onnx-int8": ("onnx", True),
}
REFERENCE = "torch-fp32"
ONNX_CACHE = REPO / "var" / "onnx-cache"  # kept between runs, as workers keep it


def workers_path() -> str:
    from django.conf import settings

    return next(k for k, v in PATHS.items() if v == (settings.CXM_ENCODER_RUNTIME, settings.CXM_QUANTIZE))


def load_cxm(key: str, model_dir: Path) -> dict[str, Any]:
    from learning import actions
    from learning.ml.classifier import Classifier

    runtime, quantize = PATHS[key]
    started = time.perf_counter()
    classifier = Classifier(model_dir, quantize=quantize, runtime=runtime, onnx_cache=ONNX_CACHE)
    load_s = time.perf_counter() - started
    if classifier.runtime != runtime:
        raise SystemExit(f"{key}: the classifier fell back to {classifier.runtime} (see the log above)")
    started = time.perf_counter()
    head = actions.current_intent_head(classifier)  # fitted on first use (the default intents' examples)
    head_s = time.perf_counter() - started
    if head is None:
        raise SystemExit("no intent head: the default intents were not installed by the migrations")
    return {"key": key, "name": f"CXM {runtime} {'int8' if quantize else 'fp32'}", "classifier": classifier,
            "version": classifier.version, "intent_head": head.version, "head": head, "load_s": load_s,
            "intent_fit_s": head_s, "batch_ms": [], "pass_rates": [], "pass_cpu_ms": [], "outputs": []}


def run_cxm_pass(path: dict[str, Any], texts: list[str], batch: int, ctx: dict[str, Any], record: bool) -> None:
    """One timed pass over `texts` in batches: Classifier.classify + assess per batch."""
    classifier, head = path["classifier"], path["head"]
    intents, weights = ctx["intents"], ctx["weights"]
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    keep = record and not path["pass_rates"]  # the first timed pass's results are compared
    pass_started, cpu_started = time.perf_counter(), time.process_time()
    for chunk in chunks:
        t0 = time.perf_counter()
        out = [(r, *assess_one(r, intents, weights)) for r in classifier.classify(chunk, intent_head=head)]
        if record:
            path["batch_ms"].append((time.perf_counter() - t0) * 1000)
        if keep:
            path["outputs"].extend(out)
    if record:
        path["pass_rates"].append(len(texts) / (time.perf_counter() - pass_started))
        path["pass_cpu_ms"].append((time.process_time() - cpu_started) * 1000 / len(texts))


def finish_cxm(path: dict[str, Any], texts: list[str], batch: int) -> dict[str, Any]:
    path.update(msgs_per_s=statistics.median(path["pass_rates"]), cpu_ms_per_msg=statistics.median(path["pass_cpu_ms"]),
                p50_ms=pct(path["batch_ms"], 0.5), p95_ms=pct(path["batch_ms"], 0.95), batches=len(path["batch_ms"]),
                batch=batch, messages=len(texts))
    return path


def assess_one(result, intents: dict, weights) -> tuple[Any, float]:
    from learning.actions import assess

    decision, score, _ = assess(result, intents, weights)
    return decision, score


# --- Naive baseline -----------------------------------------------------------------------------
class NaivePipelines:
    """Three separate single-task pipelines, as a team without a shared encoder would run them:
    each loads its own fp32 copy of the model, tokenizes on its own and runs its own encoder pass,
    one message at a time."""

    def __init__(self, model_dir: Path, head):
        from learning.ml import multitask

        self.copies = [multitask.load(model_dir) for _ in range(3)]
        self.head = head
        self.max_length = 128

    def _forward(self, copy: int, text: str):
        model, tokenizer, _ = self.copies[copy]
        enc = tokenizer([text], truncation=True, max_length=self.max_length, return_tensors="pt")
        return model, enc["input_ids"], enc["attention_mask"]

    def _probs(self, copy: int, head: str, text: str) -> tuple[dict[str, float], bool]:
        model, ids, mask = self._forward(copy, text)
        with torch.inference_mode():
            _, logits = model(ids, mask, heads=[head])
        row = torch.softmax(logits[head].float(), dim=-1)[0].numpy()
        scores = {label: round(float(p), 4) for label, p in zip(model.labels[head], row, strict=True)}
        return scores, ids.shape[1] >= self.max_length

    def _intent(self, text: str) -> dict[str, float]:
        from learning.ml import intents as intent_math

        model, ids, mask = self._forward(2, text)
        with torch.inference_mode():
            pooled = model.embed(ids, mask).float().numpy()
        row = intent_math.probabilities(pooled, self.head.weights)[0]
        return {label: round(float(p), 4) for label, p in zip(self.head.labels, row, strict=True)}

    def classify_one(self, text: str, matcher):
        from learning import language, terms
        from learning.ml.classifier import TextResult
        from learning.ml.text import normalize, readable

        clean, flags = normalize(text)
        result = TextResult(text=clean, flags=list(flags))
        if clean:
            result.sentiment_scores, cut = self._probs(0, "sentiment", clean)
            result.emotion_scores, _ = self._probs(1, "emotion", clean)
            result.intent_scores = self._intent(clean)
            for name in ("sentiment", "emotion", "intent"):
                scores = getattr(result, f"{name}_scores")
                setattr(result, name, max(scores, key=scores.get))
            if cut and "truncated" not in result.flags:
                result.flags.append("truncated")
        original = readable(text)
        lang, conf = language.detect([original])[0]
        result.language, result.language_confidence = lang, round(float(conf), 4)
        result.topics = matcher.match([original])[0]
        result.entities = terms.entities([original])[0]
        return result


def run_naive(model_dir: Path, texts: list[str], head, ctx: dict[str, Any]) -> dict[str, Any]:
    from learning import terms

    started = time.perf_counter()
    naive = NaivePipelines(model_dir, head)
    load_s = time.perf_counter() - started
    matcher = terms.current_matcher()
    intents, weights = ctx["intents"], ctx["weights"]
    for text in texts[:NAIVE_WARMUP]:
        assess_one(naive.classify_one(text, matcher), intents, weights)
    per_msg_ms: list[float] = []
    outputs = []
    started = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        result = naive.classify_one(text, matcher)
        outputs.append((result, *assess_one(result, intents, weights)))
        per_msg_ms.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "name": "naive: 3 pipelines, 1 msg at a time",
        "load_s": load_s,
        "msgs_per_s": len(texts) / elapsed,
        "p50_ms": pct(per_msg_ms, 0.5),
        "p95_ms": pct(per_msg_ms, 0.95),
        "batch": 1,
        "messages": len(texts),
        "outputs": outputs,
    }


# --- Agreement ----------------------------------------------------------------------------------
def agreement(a: list[tuple], b: list[tuple]) -> dict[str, float]:
    """Share of messages on which two paths give the same label, per field."""
    n = min(len(a), len(b))
    if not n:
        return {}
    fields = {
        "sentiment": lambda o: o[0].sentiment, "emotion": lambda o: o[0].emotion, "intent": lambda o: o[0].intent,
        "language": lambda o: o[0].language, "topics": lambda o: sorted(map(repr, o[0].topics)),
        "lane": lambda o: o[1].lane,
    }
    out = {name: sum(get(x) == get(y) for x, y in zip(a[:n], b[:n], strict=True)) / n for name, get in fields.items()}
    out["priority_max_abs_diff"] = max(abs(x[2] - y[2]) for x, y in zip(a[:n], b[:n], strict=True))
    return out


# --- Report -------------------------------------------------------------------------------------
def print_results(paths: list[dict[str, Any]], naive: dict[str, Any], header: str, workers: str) -> None:
    rows = [("path", "msgs", "batch", "msgs/s", "CPU ms/msg", "p50 ms/batch", "p95 ms/batch", "vs naive",
             "lanes = fp32", "labels = fp32", "load s")]
    for p in [*paths, naive]:
        agree = p.get("agreement", {})
        labels = min((agree[k] for k in ("sentiment", "emotion", "intent") if k in agree), default=None)
        rows.append((p["name"] + (" (workers)" if p.get("key") == workers else ""), f"{p['messages']:,}",
                     str(p["batch"]), f"{p['msgs_per_s']:,.1f}",
                     f"{p['cpu_ms_per_msg']:.2f}" if "cpu_ms_per_msg" in p else "",
                     f"{p['p50_ms']:,.1f}", f"{p['p95_ms']:,.1f}", f"{p['msgs_per_s'] / naive['msgs_per_s']:.2f}x",
                     f"{agree['lane']:.1%}" if agree else "", f"{labels:.1%}" if labels is not None else "",
                     f"{p['load_s']:.2f}"))
    print_table(header, rows)


def lane_changes(a: list[tuple], b: list[tuple]) -> dict[str, int]:
    """Of the messages whose lane differs between two paths: how many also differ in intent, in
    sentiment (but not intent), or in neither (a score moved across a lane threshold)."""
    out = Counter()
    for x, y in zip(a, b, strict=False):
        if x[1].lane == y[1].lane:
            continue
        out["lane"] += 1
        if x[0].intent != y[0].intent:
            out["intent_differs"] += 1
        elif x[0].sentiment != y[0].sentiment:
            out["sentiment_differs"] += 1
        else:
            out["same_labels"] += 1
    return dict(out)


def print_table(header: str, rows: list[tuple[str, ...]]) -> None:
    """A title, then the rows in columns: the first row is the heading, the first column left
    aligned, the others right aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "-" * (sum(widths) + 2 * (len(widths) - 1))
    print()
    print(header)
    print(line)
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[0]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print(line)
    print(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="cxm-bench-classify-")
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        setup_django(Path(tmp_ctx.name))
        from django.conf import settings

        from learning.models import Intent, PriorityWeights

        batch = args.batch or settings.CXM_CLASSIFY_BATCH
        path = args.data or Path(settings.CXM_TRAINING_DATA) / SAMPLE
        texts, source = load_texts(max(args.messages, args.naive_messages), path)
        naive_texts = texts[: args.naive_messages]
        texts = texts[: args.messages]
        model_dir = Path(args.model or settings.CXM_BUNDLED_MODEL)
        ctx = {"intents": {i.slug: i for i in Intent.objects.all()}, "weights": PriorityWeights.current()}
        if args.threads:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
        print(f"texts: {source}", flush=True)
        print(f"model: {model_dir}", flush=True)
        print(f"torch {torch.__version__}, {threads} threads ({'--threads' if args.threads else 'default'}), "
              f"{os.cpu_count()} cores, load average {load_before[0]:.2f}", flush=True)
        if load_before[0] >= (os.cpu_count() or 1) - 0.5:
            print("warning: other processes keep the cores busy; torch's threads then wait on each other, which "
                  "hurts small single-message passes (naive) far more than batches: compare with --threads 1",
                  flush=True)

        workers = workers_path()
        keys = [REFERENCE, *[k for k in args.paths if k != REFERENCE]]
        paths = []
        for key in keys:
            print(f"loading CXM {key}", flush=True)
            paths.append(load_cxm(key, model_dir))
        for path_ in paths:  # warm-up
            run_cxm_pass(path_, texts[: WARMUP_BATCHES * batch], batch, ctx, record=False)
        # The paths' passes are interleaved, so that a change in the machine's load hits them alike.
        for rep in range(args.repeats):
            for path_ in paths:
                print(f"pass {rep + 1}/{args.repeats}: CXM {path_['key']}, {len(texts)} messages in batches of {batch}",
                      flush=True)
                run_cxm_pass(path_, texts, batch, ctx, record=True)
        paths = [finish_cxm(p_, texts, batch) for p_ in paths]
        by_key = {p_["key"]: p_ for p_ in paths}
        fp32 = by_key[REFERENCE]
        print(f"naive: {len(naive_texts)} messages, one at a time", flush=True)
        naive = run_naive(model_dir, naive_texts, fp32["head"], ctx)
        load_after = os.getloadavg()

        naive["agreement"] = agreement(naive["outputs"], fp32["outputs"])
        for p_ in paths:
            p_["agreement"] = agreement(p_["outputs"], fp32["outputs"])
            p_["lane_changes"] = lane_changes(p_["outputs"], fp32["outputs"])
        main_path = by_key.get(workers, paths[-1])
        lanes = Counter(o[1].lane for o in main_path["outputs"])
        languages = Counter(o[0].language for o in main_path["outputs"])
        with_topics = sum(bool(o[0].topics) for o in main_path["outputs"]) / len(main_path["outputs"])

        print_results(paths, naive, f"CXM classification bench: {os.cpu_count()} cores, torch {threads} threads, "
                                    f"model {fp32['version']}, intent heads fitted per precision", workers)
        print("CXM rows: full Classifier.classify + assess per batch, throughput = median of interleaved passes; "
              "CPU ms/msg = this process's CPU time per message; naive row: p50/p95 are per message")
        for p_ in paths:
            print(f"  {p_['key']}: passes {', '.join(f'{r:.0f}' for r in p_['pass_rates'])} msgs/s; "
                  f"{p_['msgs_per_s'] / fp32['msgs_per_s']:.2f}x torch fp32; version {p_['version']}, "
                  f"intent head {p_['intent_head']} (fitted in {p_['intent_fit_s']:.1f} s)")
        print("agreement naive vs CXM torch fp32 (same model, must be ~1): "
              + ", ".join(f"{k} {v:.3f}" for k, v in naive["agreement"].items()))
        for p_ in paths[1:]:
            print(f"agreement CXM {p_['key']} vs torch fp32: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in p_["agreement"].items())
                  + f"; lanes that differ: {p_['lane_changes']}")
        print(f"{main_path['key']} lanes: {dict(lanes.most_common())}; languages: {dict(languages.most_common(6))}; "
              f"with topics: {with_topics:.0%}")
        print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
              "(a busy machine lowers absolute figures; compare ratios)")

        ratio = main_path["msgs_per_s"] / naive["msgs_per_s"]
        goals = {
            f"goal_{GOAL_MSGS_PER_S}_msgs_per_s_met": main_path["msgs_per_s"] >= GOAL_MSGS_PER_S,
            f"goal_{GOAL_FAST_MSGS_PER_S}_msgs_per_s_met": main_path["msgs_per_s"] >= GOAL_FAST_MSGS_PER_S,
            "goal_5x_naive_met": ratio >= GOAL_RATIO,
            "goal_lanes_97_met": main_path is fp32 or main_path["agreement"]["lane"] >= GOAL_LANES,
        }
        print(f"goals for workers' path ({main_path['key']}): >= {GOAL_MSGS_PER_S} msgs/s (issue 13) and "
              f">= {GOAL_FAST_MSGS_PER_S} msgs/s (issue 19): {main_path['msgs_per_s']:.1f}, "
              f"{'met' if goals[f'goal_{GOAL_MSGS_PER_S}_msgs_per_s_met'] else 'NOT met'} / "
              f"{'met' if goals[f'goal_{GOAL_FAST_MSGS_PER_S}_msgs_per_s_met'] else 'NOT met'}; "
              f">= {GOAL_RATIO:.0f}x naive ({ratio:.2f}x): {'met' if goals['goal_5x_naive_met'] else 'NOT met'}; "
              f"lanes >= {GOAL_LANES:.0%} as torch fp32 ({main_path['agreement']['lane']:.1%}): "
              f"{'met' if goals['goal_lanes_97_met'] else 'NOT met'}")

        figures: dict[str, Any] = {
            "texts": source, "messages": len(texts), "naive_messages": len(naive_texts), "batch": batch,
            "repeats": args.repeats, "torch_threads": threads, "threads_option": args.threads, "cores": os.cpu_count(),
            "model_version": fp32["version"], "workers_path": main_path["key"],
            "load_avg_before": round(load_before[0], 2), "load_avg_after": round(load_after[0], 2),
        }
        for p_ in [*paths, naive]:
            key = p_.get("key", "naive").replace("-", "_")
            figures[f"{key}_msgs_per_s"] = round(p_["msgs_per_s"], 1)
            figures[f"{key}_p50_ms"] = round(p_["p50_ms"], 2)
            figures[f"{key}_p95_ms"] = round(p_["p95_ms"], 2)
            figures[f"{key}_load_s"] = round(p_["load_s"], 2)
            if "cpu_ms_per_msg" in p_:
                figures[f"{key}_cpu_ms"] = round(p_["cpu_ms_per_msg"], 2)
                figures[f"{key}_pass_msgs_per_s"] = [round(r, 1) for r in p_["pass_rates"]]
                figures[f"ratio_{key}_vs_torch_fp32"] = round(p_["msgs_per_s"] / fp32["msgs_per_s"], 2)
            figures[f"agreement_{key}_vs_torch_fp32"] = {k: round(v, 4) for k, v in p_["agreement"].items()}
        figures["workers_msgs_per_s"] = round(main_path["msgs_per_s"], 1)
        figures["ratio_workers_vs_naive"] = round(ratio, 2)
        figures["workers_lanes"] = dict(lanes)
        figures.update(goals)
        figures["total_seconds"] = round(time.perf_counter() - started, 1)
        print("BENCH classify " + json.dumps(figures, sort_keys=True))
        return 0
    finally:
        with contextlib.suppress(Exception):  # Django may not be set up yet
            from django.db import connections

            connections.close_all()
        tmp_ctx.cleanup()


if __name__ == "__main__":
    sys.exit(main())
