"""The labelled care set: inbound messages written and labelled by the team as a care lead would
(learning/eval/care_set.jsonl), kept apart from training so that it measures what care sees, not
what the models were taught. Only the loader lives here; the evaluation reads it."""

import json
from pathlib import Path

CARE_SET = Path(__file__).resolve().parent.parent / "eval" / "care_set.jsonl"
# The tuning set of the lane rules (learning.lanes), in the care set's format: hand-written apart from
# it, so that the rules are tuned there and the care set and the airline tweets stay evaluation.
LANE_DEV_SET = CARE_SET.parent / "lane_dev_set.jsonl"
FIELDS = ("text", "lang", "industry", "channel", "lane", "intent", "sentiment")


def load_care_set(path: str | Path | None = None) -> list[dict]:
    """The care set's rows, in file order: dicts with text, lang (ISO 639-1), industry, channel
    (dm|mention|reply|review|email|feed), lane, intent, sentiment and an optional note. A row that
    is not a JSON object or lacks a field raises ValueError naming its line, so a hand edit that
    breaks the file fails loudly instead of shrinking the evaluation."""
    rows = []
    lines = Path(path or CARE_SET).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"care set line {number}: {error}") from error
        missing = [f for f in FIELDS if not isinstance(row, dict) or not isinstance(row.get(f), str)]
        if missing:
            raise ValueError(f"care set line {number}: missing {', '.join(missing)}")
        rows.append(row)
    return rows
