"""Agents' lane corrections teach the lane decision.

When an agent says a message belongs in another lane ("not spam: open a case", "this is praise"),
the same text, or one nearly identical to it on the encoder's sentence embedding, takes that lane
from then on, with the correction named as the reason. Spam comes in near-identical waves and so
do customers' stock phrasings, which is where a single correction pays. The sentiment corrections
go into `retrain_models`; lanes have no model to retrain, so this memory is how they learn.

The memory holds the newest MAX_CORRECTIONS lane corrections (the newest wins for a text), is
checked for new ones every CHECK_SECONDS, and embeds each corrected text once per process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from learning.ml.text import normalize

MAX_CORRECTIONS = 5000
CHECK_SECONDS = 5.0
# Cosine similarity on L2-normalised embeddings above which two texts say the same thing. Chosen
# high: rewordings of one spam template score 0.95+, two different customers' complaints rarely 0.9.
NEAR = 0.93


@dataclass(frozen=True)
class Remembered:
    lane: str
    reason: str


def _key(text: str) -> str:
    return " ".join(normalize(text)[0].lower().split())


class LaneMemory:
    def __init__(self):
        self._lock = threading.Lock()
        self._checked = 0.0
        self._newest_id = None
        self._by_text: dict[str, Remembered] = {}
        self._vectors: dict[str, dict[str, np.ndarray]] = {}  # reader -> text key -> embedding
        self._matrices: dict[str, tuple[list[str], np.ndarray]] = {}  # reader -> (keys, stacked)

    def lookup(self, results, embedders: dict) -> list[Remembered | None]:
        """The remembered lane of each classified text (TextResult with its embedding), or None.
        `embedders` maps a reader name to a function that embeds texts the way that reader did."""
        self._refresh()
        if not self._by_text:
            return [None] * len(results)
        out = []
        for result in results:
            key = _key(result.text) if result.text else ""
            found = self._by_text.get(key) if key else None
            if found is None and result.embedding is not None and result.reader in embedders:
                found = self._nearest(result, embedders[result.reader])
            out.append(found)
        return out

    def _nearest(self, result, embed) -> Remembered | None:
        keys, matrix = self._matrix(result.reader, embed)
        if not keys:
            return None
        sims = matrix @ (result.embedding / max(float(np.linalg.norm(result.embedding)), 1e-9))
        best = int(np.argmax(sims))
        if sims[best] < NEAR:
            return None
        found = self._by_text[keys[best]]
        return Remembered(found.lane, f"{found.reason} (a near-identical message)")

    def _matrix(self, reader: str, embed) -> tuple[list[str], np.ndarray]:
        """The remembered texts and their unit embeddings by this reader, built once per change of
        the corrections (each text embedded once per process)."""
        with self._lock:
            built = self._matrices.get(reader)
            if built is not None:
                return built
            known = self._vectors.setdefault(reader, {})
            missing = [k for k in self._by_text if k not in known]
            if missing:
                vecs = np.asarray(embed(missing), dtype=np.float32)
                vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9, None)
                known.update(zip(missing, vecs, strict=True))
            for stale in [k for k in known if k not in self._by_text]:  # bounded by MAX_CORRECTIONS
                del known[stale]
            keys = list(self._by_text)
            built = (keys, np.stack([known[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32))
            self._matrices[reader] = built
            return built

    def _refresh(self) -> None:
        from learning.models import Correction, Lane

        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return
        self._checked = now
        rows = Correction.objects.filter(field=Correction.Field.LANE).order_by("-pk")
        newest = rows.values_list("pk", flat=True).first()
        if newest == self._newest_id:
            return
        labels = dict(Lane.choices)
        by_text: dict[str, Remembered] = {}
        for text, lane in rows.values_list("text", "value")[:MAX_CORRECTIONS]:
            key = _key(text)
            if key and key not in by_text:  # newest first: the latest word on a text wins
                by_text[key] = Remembered(lane, f"an agent put this in {labels.get(lane, lane)}")
        with self._lock:
            self._by_text, self._newest_id, self._matrices = by_text, newest, {}

    def forget(self) -> None:
        with self._lock:
            self._checked, self._newest_id, self._by_text, self._vectors, self._matrices = 0.0, None, {}, {}, {}


memory = LaneMemory()
