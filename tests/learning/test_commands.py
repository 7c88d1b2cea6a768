"""classify_file, classify_messages and retrain_models, run as an operator would."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from learning.models import Classification, Correction, ModelVersion
from listening.actions import ingest_messages
from listening.models import Message
from tests.listening.helpers import inbound

pytestmark = pytest.mark.django_db

LINES = [
    "My package never arrived, I want my money back",
    "",
    "😍😍😍",
    "Mélange de scripts: привет 你好 hello",
    "y" * 100_000,
    "same message again",
    "same message again",
]


def test_classify_file_writes_every_field_for_every_line(loaded, tmp_path):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    body = "\n".join(LINES).encode() + b"\nbroken \xff\xfe utf-8\n"
    source.write_bytes(body)
    call_command("classify_file", str(source), str(out), stderr=StringIO())
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == list(range(1, len(LINES) + 2))
    fields = {"sentiment", "sentiment_scores", "emotion", "emotion_scores", "intent", "intent_scores", "language",
              "language_confidence", "topics", "entities", "lane", "lane_confidence", "priority",
              "priority_factors", "model_name", "model_version", "models_used", "created_at", "flags"}
    for record in records:
        assert fields <= set(record)
    first, empty, emoji, mixed, long, dup1, dup2, broken = records
    assert first["lane"] in {"issue", "ambivalence"} and first["sentiment"] == "negative"
    assert empty["flags"] == ["empty"] and empty["lane"] == "triage"  # nothing to read: a person looks
    assert emoji["sentiment"] and emoji["language"] == "und"
    assert mixed["sentiment"]
    assert "truncated" in long["flags"] and len(long["input"]) == 100_000
    assert dup1["sentiment_scores"] == dup2["sentiment_scores"]
    assert "invalid_unicode" in broken["flags"] and "\ufffd" in broken["input"]


def test_classify_file_reports_a_missing_file(loaded, tmp_path):
    with pytest.raises(CommandError, match="cannot open"):
        call_command("classify_file", str(tmp_path / "nope.txt"), str(tmp_path / "out.jsonl"))


def test_classify_messages_command_requeues_failed(loaded, make_connector):
    from learning import actions

    ingest_messages(make_connector("webhook"), [inbound("a", "help, my card was stolen"), inbound("b", "hi")])
    a, b = (Message.objects.get(external_id=x).pk for x in "ab")
    actions.mark_failed([a], "worker crashed")
    out = StringIO()
    call_command("classify_messages", "--failed", "--now", stdout=out)
    assert "classified 1" in out.getvalue()
    assert Classification.objects.get(message_id=a, is_current=True).status == "ok"
    call_command("classify_messages", "--now", stdout=out)  # the unclassified: b
    assert Classification.objects.filter(message_id=b).exists()
    with pytest.raises(CommandError):
        call_command("classify_messages", "--since", "yesterday-ish")


def _tiny_data(root):
    """A few lines in the layout of ../shared/data, so retraining runs in seconds."""
    sentiment = [("awful delay again", 0), ("ok then", 1), ("great crew, thanks", 2)] * 8
    emotion = [("so angry", 0), ("what a joy", 1), ("it will get better", 2), ("so sad today", 3)] * 6
    for task, rows in [("sentiment", sentiment), ("emotion", emotion)]:
        folder = root / f"tweeteval_{task}"
        folder.mkdir()
        for split in ("train", "val"):
            (folder / f"{split}_text.txt").write_text("".join(f"{t} \n" for t, _ in rows))
            (folder / f"{split}_labels.txt").write_text("".join(f"{y}\n" for _, y in rows))
    airline = root / "twitter_us_airline_sentiment"
    airline.mkdir()
    (airline / "train.csv").write_text("tweet_id,airline_sentiment,text\n1,negative,@x lost my bag\n")
    (root / "clinc150").mkdir()
    pairs = [["book a flight", "book_flight"], ["play music", "play_music"]] * 4
    (root / "clinc150" / "data_full_train_val.json").write_text(json.dumps({"train": pairs, "val": pairs}))


def test_retrain_folds_corrections_and_promotes_only_if_not_worse(loaded, make_connector, tmp_path,
                                                                    django_user_model):
    from learning import actions

    data = tmp_path / "data"
    data.mkdir()
    _tiny_data(data)
    ingest_messages(make_connector("webhook"), [inbound("c1", "the crew lost my bag, again")])
    message = Message.objects.get()
    actions.record_correction(message, "sentiment", "negative", django_user_model.objects.create_user("a"))
    out = StringIO()
    # A few steps from the raw encoder cannot match the bundled model: not promoted.
    call_command("retrain_models", "--data", str(data), "--steps", "3", "--out-dir", str(tmp_path / "m"), stdout=out)
    assert "1 sentiment corrections folded in" in out.getvalue()
    assert "not promoted" in out.getvalue() and not ModelVersion.objects.exists()
    # With a tolerance that accepts any drop, the new model is promoted and workers switch to it.
    call_command("retrain_models", "--data", str(data), "--steps", "3", "--out-dir", str(tmp_path / "m"),
                 "--tolerance", "1", stdout=out)
    promoted = ModelVersion.objects.get(active=True)
    assert (tmp_path / "m" / promoted.version / "heads.safetensors").exists()
    assert Correction.objects.get().used_in_version == promoted.version
    report = promoted.metrics["sentiment_val_macro_recall"]
    assert set(report) == {"before", "after"}
