"""Figures that reflect care, not only benchmarks: where real and hand-labelled customer messages
land, as workers decide it (the classifier, the intent head, the lane rules and, for a thread, the
lane of the conversation so far).

- the labelled care set (learning/eval/care_set.jsonl, written and labelled by the team, never
  trained on): lane agreement, and how many of its non-spam messages go to noise (goal: none);
- the first customer turn of every conversation in the IBM customer-care set, and the inbound
  SpotifyCares tweets that got a direct reply: a human answered each, so the share that goes to
  noise should be about 0;
- the US-airline tweets: the share of complaints (negative) that land in the issue lane, and the
  share of praise (positive) found.

"Praise found" is the share of positive tweets in the praise lane, and nothing else. A positive
tweet that also asks something ("thanks for the quick reply! when is the next flight to BOS?") is
one a care lead wants answered, so the issue lane is right for it, and the case shows its positive
sentiment; that share is reported beside it (airline_praise_answered_positive) and is not counted as
found, so the goal's figure keeps its meaning.

The lane rules are tuned on their own hand-written dev set (learning/eval/lane_dev_set.jsonl,
care_eval.LANE_DEV_SET; `evaluate_models --care-set` reads it like the care set), never on what is
measured here.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

SPAM_LANE = "noise"


def _lanes(classifier, intent_head, assess, texts: list[str], addressed: list[bool] | None = None,
           batch: int = 64) -> list[str]:
    out = []
    for start in range(0, len(texts), batch):
        results = classifier.classify(texts[start:start + batch], intent_head=intent_head)
        for i, result in enumerate(results):
            out.append(assess(result, "", addressed[start + i] if addressed else True).lane)
    return out


def care_set_figures(classifier, intent_head, assess, rows: list[dict]) -> dict:
    # A feed post is overheard; every other channel of the set is sent to the brand.
    lanes = _lanes(classifier, intent_head, assess, [r["text"] for r in rows], [r["channel"] != "feed" for r in rows])
    non_spam = [(r, lane) for r, lane in zip(rows, lanes, strict=True) if r["lane"] != SPAM_LANE]
    by_language: dict[str, list[bool]] = defaultdict(list)
    for r, lane in zip(rows, lanes, strict=True):
        by_language[r.get("lang", "und")].append(lane == r["lane"])
    spam = [lane for r, lane in zip(rows, lanes, strict=True) if r["lane"] == SPAM_LANE]
    return {
        "care_set_messages": len(rows),
        "care_set_lane_agreement": round(sum(lane == r["lane"] for r, lane in zip(rows, lanes, strict=True))
                                         / max(len(rows), 1), 4),
        "care_set_non_spam_to_noise": sum(lane == SPAM_LANE for _, lane in non_spam),
        "care_set_spam_caught": round(sum(lane == SPAM_LANE for lane in spam) / max(len(spam), 1), 4),
        "care_set_lane_agreement_by_language": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_language.items())},
        "care_set_lanes_predicted": dict(Counter(lanes)),
    }


def ibm_first_turns(data_root) -> list[str]:
    texts = []
    for name in ("dev.json", "test.json"):
        path = Path(data_root) / "twitter_customer_care_ibm" / name
        for conversation in json.loads(path.read_text(encoding="utf-8")):
            first = next((t for t in conversation["dialogContent"] if "client" in t), None)
            if first:
                texts.append(first["message"])
    return texts


def spotify_answered(data_root) -> tuple[list[str], list[str]]:
    """Inbound SpotifyCares tweets that got a direct reply, in time order, each with the key of the
    customer's thread (their author id: the sample holds one thread per customer at a time)."""
    path = Path(data_root) / "twcs_spotifycares_sample" / "support_requests.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("inbound") == "True"]
    answered = [r for r in rows if (r.get("response_tweet_id") or "").strip()]
    return [r["text"] or "" for r in answered], [r["author_id"] or "" for r in answered]


def answered_to_noise(classifier, intent_head, assess, data_root) -> dict:
    first_turns = ibm_first_turns(data_root)
    ibm = _lanes(classifier, intent_head, assess, first_turns)
    texts, threads = spotify_answered(data_root)
    # As workers see them: a message continues the lane of its customer's thread so far.
    lanes, current = [], {}
    for start in range(0, len(texts), 64):
        results = classifier.classify(texts[start:start + 64], intent_head=intent_head)
        for offset, result in enumerate(results):
            thread = threads[start + offset]
            lane = assess(result, current.get(thread, "")).lane
            if lane != SPAM_LANE:
                current[thread] = lane
            lanes.append(lane)
    return {
        "ibm_first_turns": len(ibm),
        "ibm_first_turns_to_noise": round(ibm.count(SPAM_LANE) / max(len(ibm), 1), 4),
        "spotify_answered": len(lanes),
        "spotify_answered_to_noise": round(lanes.count(SPAM_LANE) / max(len(lanes), 1), 4),
    }


def airline_figures(classifier, intent_head, assess, data_root) -> dict:
    from learning.ml import datasets

    texts, labels = datasets.airline_sentiment(data_root)
    results, lanes = [], []
    for start in range(0, len(texts), 64):
        batch = classifier.classify(texts[start:start + 64], intent_head=intent_head)
        results += batch
        lanes += [assess(result).lane for result in batch]
    complaints = [lane for lane, label in zip(lanes, labels, strict=True) if label == "negative"]
    praise = [lane for lane, label in zip(lanes, labels, strict=True) if label == "positive"]
    answered = [lane == "issue" and result.sentiment == "positive"
                for lane, label, result in zip(lanes, labels, results, strict=True) if label == "positive"]
    return {
        "airline_complaints_to_issue": round(complaints.count("issue") / max(len(complaints), 1), 4),
        "airline_complaints_to_noise": round(complaints.count(SPAM_LANE) / max(len(complaints), 1), 4),
        "airline_praise_found": round(praise.count("praise") / max(len(praise), 1), 4),
        "airline_praise_answered_positive": round(sum(answered) / max(len(answered), 1), 4),
        "airline_praise_lanes": dict(Counter(praise)),
    }
