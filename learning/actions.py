"""Learn's actions: classify stored messages, fit the intent head, record agents' corrections.

The model code (torch, transformers) is imported inside the functions that need it, so the web
process, which only enqueues, never loads it. Models load once per process and are reused.
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cxm.exceptions import CXMError
from learning import lanes, priority, rollups
from learning.lane_memory import memory as lane_memory
from learning.ml.multilingual import MULTILINGUAL_TAG
from learning.models import Classification, Correction, Intent, IntentExample, IntentModel, PriorityWeights
from learning.signals import messages_classified
from listening.models import Direction, Message
from listening.times import window_start

log = logging.getLogger(__name__)

INTENT_CHECK_SECONDS = 5.0
ERROR_MAX_CHARS = 2000

_lock = threading.Lock()
_classifier = None
_intent_cache = {"checked": 0.0, "head": None, "encoder": None}
_model_cache = {"checked": 0.0, "path": None}
MODEL_CHECK_SECONDS = 30.0


class InvalidCorrection(CXMError):
    status_code = 400
    code = "invalid_correction"


def _active_model_path() -> str | None:
    from learning.models import ModelVersion

    active = ModelVersion.objects.filter(active=True).order_by("-created_at").values_list("path", flat=True)
    return active.first()


def get_classifier():
    """The process's classifier, loaded on first use (seconds), then reused. A model promoted by
    `retrain_models` is picked up within MODEL_CHECK_SECONDS."""
    global _classifier
    now = time.monotonic()
    with _lock:
        if _classifier is None or now - _model_cache["checked"] >= MODEL_CHECK_SECONDS:
            path = _active_model_path()
            if _classifier is None or path != _model_cache["path"]:
                from learning.ml.classifier import Classifier

                _set_torch_threads()
                _classifier = Classifier(path)
                _model_cache["path"] = path
            _model_cache["checked"] = now
        return _classifier


def _set_torch_threads() -> None:
    if settings.CXM_TORCH_THREADS:
        import torch

        torch.set_num_threads(settings.CXM_TORCH_THREADS)


def reset_models() -> None:
    """Forget the loaded models (tests; after promoting a new model version)."""
    global _classifier
    _classifier = None
    _model_cache.update(checked=0.0, path=None)
    _intent_cache.update(checked=0.0, head=None, encoder=None)
    lane_memory.forget()


# --- Intents ----------------------------------------------------------------------------------


def _head_from_row(row: IntentModel):
    from learning.ml.classifier import IntentHead

    weights = np.frombuffer(bytes(row.weights), dtype=np.float32).reshape(len(row.labels), -1)
    # With the multilingual reader, the row holds two heads side by side (the English encoder's
    # columns, then the reader's; both encoders are 384-wide): see fit_intents.
    if MULTILINGUAL_TAG in row.encoder:
        half = weights.shape[1] // 2
        return IntentHead(version=row.version, labels=list(row.labels), weights=weights[:, :half],
                          multilingual_weights=weights[:, half:])
    return IntentHead(version=row.version, labels=list(row.labels), weights=weights)


_fitted: dict[str, tuple] = {}  # the last fit of this process, by version


def _fit_heads(classifier, pairs: list[tuple[str, str]]) -> tuple[list[str], np.ndarray]:
    from learning.ml import intents as intent_math

    texts, slugs = [t for t, _ in pairs], [s for _, s in pairs]
    labels, weights = intent_math.fit(classifier.embed(texts), slugs)
    # The reader takes the shipped examples' embeddings from its file; only new ones are read.
    multilingual = classifier.embed_multilingual(texts)
    if multilingual is not None:
        ml_labels, ml_weights = intent_math.fit(multilingual, slugs)
        if ml_labels != labels:  # same examples give the same sorted classes
            raise ValueError("intent heads disagree on their labels")
        weights = np.hstack([weights, ml_weights])
    return labels, weights


def fit_intents(classifier=None) -> IntentModel | None:
    """Fit the intent head on the enabled intents' examples and store it. None when fewer than two
    intents have examples (nothing to tell apart)."""
    classifier = classifier or get_classifier()
    pairs = list(
        IntentExample.objects.filter(intent__enabled=True).order_by("pk").values_list("text", "intent__slug")
    )
    if len({slug for _, slug in pairs}) < 2:
        # Nothing to tell apart: drop the old heads too, or workers would keep predicting intents
        # that admins removed.
        IntentModel.objects.filter(encoder=classifier.encoder_id).delete()
        _intent_cache["checked"] = 0.0
        return None
    encoder = classifier.encoder_id
    # The version names the examples and the encoder, so refitting an unchanged set is a no-op
    # that only marks that row as the newest again (and, in this process, skips the fit).
    version = hashlib.sha256(repr((encoder, pairs)).encode()).hexdigest()[:16]
    labels, weights = _fitted.get(version) or _fit_heads(classifier, pairs)
    _fitted.clear()
    _fitted[version] = (labels, weights)
    row, _ = IntentModel.objects.update_or_create(
        version=version,
        defaults=dict(encoder=encoder, labels=labels, weights=weights.tobytes(),
                      example_count=len(pairs), created_at=timezone.now()),
    )
    _intent_cache["checked"] = 0.0
    return row


def current_intent_head(classifier):
    """The newest intent head fitted for this classifier's encoder, checked every few seconds so
    workers pick up a retrain without a restart. Fitted on the spot when there is none yet."""
    now = time.monotonic()
    cache = _intent_cache
    if cache["encoder"] == classifier.encoder_id and now - cache["checked"] < INTENT_CHECK_SECONDS:
        return cache["head"]
    row = IntentModel.objects.filter(encoder=classifier.encoder_id).order_by("-created_at", "-pk").first()
    if row is None:
        row = fit_intents(classifier)
    head = cache["head"]
    if row is None:
        head = None
    elif head is None or head.version != row.version:
        head = _head_from_row(row)
    cache.update(checked=now, head=head, encoder=classifier.encoder_id)
    return head


# --- Classification ---------------------------------------------------------------------------


@dataclass
class ClassifyOutcome:
    classified: list[int]
    skipped: int


def customer_key(author) -> tuple | None:
    """Whose history a message belongs to: the customer behind the contact, else the contact."""
    if author is None:
        return None
    return ("customer", author.customer_id) if author.customer_id else ("contact", author.pk)


def negative_history(messages: list[Message], window: timedelta, *, include_batch: bool = False) -> dict:
    """Per customer key, the send times of their messages classified negative, from `window`
    before the earliest message of the batch. The batch's own messages count only with
    `include_batch` (routing, after they are classified; not classification, which is still
    deciding them)."""
    authors = [m.author for m in messages if m.author_id]
    if not authors:
        return {}
    earliest = window_start(min(m.sent_at for m in messages), window)
    customers = {a.customer_id for a in authors if a.customer_id}
    rows = Classification.objects.filter(
        Q(message__author_id__in={a.pk for a in authors}) | Q(message__author__customer_id__in=customers),
        is_current=True, status=Classification.Status.OK, sentiment="negative", message__sent_at__gte=earliest,
    )
    if not include_batch:
        rows = rows.exclude(message_id__in=[m.pk for m in messages])
    history: dict = {}
    for author_id, customer_id, sent_at in rows.values_list(
        "message__author_id", "message__author__customer_id", "message__sent_at"
    ):
        key = ("customer", customer_id) if customer_id else ("contact", author_id)
        history.setdefault(key, []).append(sent_at)
    return history


def assess(result, intents: dict, weights, followers=None, recent_negative: int = 0, conversation_lane: str = "",
           addressed: bool = True, remembered=None):
    """Lane and priority of one classified text: the part shared by workers and classify_file.
    `addressed`: the message was sent to the brand, not overheard; `remembered`: the lane agents
    gave this text or a near-identical one (learning.lane_memory)."""
    intent = intents.get(result.intent)
    intent_conf = result.intent_scores.get(result.intent, 0.0)
    lane_mass: dict[str, float] = {}
    for slug, probability in result.intent_scores.items():
        lane = intents[slug].lane if slug in intents else ""
        lane_mass[lane] = lane_mass.get(lane, 0.0) + probability
    context = lanes.Context(
        flags=tuple(result.flags), conversation_lane=conversation_lane, addressed=addressed,
        corrected_lane=remembered.lane if remembered else "", correction_reason=remembered.reason if remembered else "",
        lane_mass=lane_mass, text=result.text,
    )
    decision = lanes.decide(result.sentiment_scores, result.emotion_scores, result.intent, intent_conf,
                            intent.lane if intent else "", context)
    score, factors = priority.score(
        weights, result.sentiment_scores, result.emotion_scores, intent.priority_weight if intent else 0.0,
        intent_conf, followers, recent_negative, result.sentiment == "negative",
    )
    return decision, score, {**factors, "lane_reason": decision.reason}


def _conversation_lanes(messages: list[Message]) -> dict[int, str]:
    """The lane of each conversation so far: that of its latest classified inbound message that
    was not noise, sent before the batch's first message of that conversation."""
    first = {}
    for m in messages:
        first.setdefault(m.conversation_id, m.sent_at)
    rows = (
        Classification.objects.filter(
            message__conversation_id__in=list(first), is_current=True, status=Classification.Status.OK,
        ).exclude(lane__in=["", "noise"]).exclude(message_id__in=[m.pk for m in messages])
        .order_by("message__sent_at").values_list("message__conversation_id", "message__sent_at", "lane")
    )
    return {conv: lane for conv, sent_at, lane in rows if sent_at <= first[conv]}


def _addressed(message: Message) -> bool:
    """Whether the message was sent to the brand (its connector says so for what it reads)."""
    from listening.connectors import UnknownConnectorKind, get_connector_class

    configured = (message.connector.config or {}).get("addressed")
    if isinstance(configured, bool):
        return configured
    try:
        return get_connector_class(message.connector.kind).addressed
    except UnknownConnectorKind:
        return True  # unknown: never let a guess hide a customer


def _build(message: Message, result, classifier, intent_head, intents: dict, weights, history,
           conversation_lanes: dict, remembered=None) -> Classification:
    key = customer_key(message.author)
    since = window_start(message.sent_at, timedelta(minutes=weights.window_minutes))
    earlier = [t for t in history.get(key, []) if since <= t < message.sent_at] if key else []
    followers = message.author.followers if message.author_id else None
    decision, score, factors = assess(result, intents, weights, followers, len(earlier),
                                      conversation_lanes.get(message.conversation_id, ""), _addressed(message),
                                      remembered)
    if result.sentiment == "negative" and key:
        history.setdefault(key, []).append(message.sent_at)  # later messages of the batch see it
    if decision.lane != "noise":
        conversation_lanes[message.conversation_id] = decision.lane  # and the conversation's lane
    return Classification(
        message=message, sentiment=result.sentiment, sentiment_scores=result.sentiment_scores,
        emotion=result.emotion, emotion_scores=result.emotion_scores, intent=result.intent,
        intent_scores=result.intent_scores, language=result.language,
        language_confidence=result.language_confidence, topics=result.topics, entities=result.entities,
        lane=decision.lane, priority=score, priority_factors=factors,
        confidence=round(decision.confidence, 4), flags=result.flags, model_name=classifier.name,
        model_version=classifier.version, models_used=classifier.models_used(intent_head, result.reader),
    )


def embedders(classifier) -> dict:
    """How each of the classifier's readers embeds a text (for matching lane corrections)."""
    from learning.ml.classifier import ENGLISH_READER, MULTILINGUAL_READER

    return {ENGLISH_READER: classifier.embed, MULTILINGUAL_READER: classifier.embed_multilingual}


def classify_messages(message_ids, force: bool = False) -> ClassifyOutcome:
    """Classify inbound messages and store the results. Idempotent: a message whose current result
    came from the same model version is skipped unless `force`."""
    messages = list(
        Message.objects.filter(pk__in=list(message_ids), direction=Direction.INBOUND)
        .select_related("author", "connector").order_by("sent_at", "pk")
    )
    classifier = get_classifier()
    if not force:
        done = set(Classification.objects.filter(
            message__in=messages, is_current=True, status=Classification.Status.OK,
            model_version=classifier.version,
        ).values_list("message_id", flat=True))
        messages = [m for m in messages if m.pk not in done]
    skipped = len(set(message_ids)) - len(messages)
    if not messages:
        return ClassifyOutcome([], skipped)
    intent_head = current_intent_head(classifier)
    results = classifier.classify([m.text for m in messages], intent_head=intent_head)
    intents = {i.slug: i for i in Intent.objects.all()}
    weights = PriorityWeights.current()
    history = negative_history(messages, timedelta(minutes=weights.window_minutes))
    conversation_lanes = _conversation_lanes(messages)
    remembered = lane_memory.lookup(results, embedders(classifier))
    rows = [
        _build(m, r, classifier, intent_head, intents, weights, history, conversation_lanes, known)
        for m, r, known in zip(messages, results, remembered, strict=True)
    ]
    _store(rows, keep_same_version=not force)
    return ClassifyOutcome([m.pk for m in messages], skipped)


def _store(rows: list[Classification], keep_same_version: bool = False) -> None:
    ids = [row.message_id for row in rows]
    with transaction.atomic():
        conversation_ids = rollups.lock_conversations(ids)
        if keep_same_version:
            # Two workers can top their batches up with the same waiting messages and both find
            # them unclassified; the lock makes the second see the first's rows here: it keeps
            # them, so a message is stored, counted and routed once.
            done = set(Classification.objects.filter(
                message_id__in=ids, is_current=True, status=Classification.Status.OK,
                model_version__in={row.model_version for row in rows}).values_list("message_id", flat=True))
            rows = [row for row in rows if row.message_id not in done]
            ids = [row.message_id for row in rows]
            if not rows:
                return
        replaced = list(Classification.objects.filter(message_id__in=ids, is_current=True).values_list("pk", flat=True))
        Classification.objects.filter(pk__in=replaced).update(is_current=False)
        created = Classification.objects.bulk_create(rows)
        class_ids = [c.pk for c in created if c.pk]
        rollups.record(replaced, created)
        rollups.refresh_moods(conversation_ids)
        transaction.on_commit(
            lambda: messages_classified.send_robust(sender=Classification, message_ids=ids,
                                                    classification_ids=class_ids)
        )


def mark_failed(message_ids, reason: str) -> int:
    """Record that these messages could not be classified, with the reason, so they are visible
    and can be re-run (`manage.py classify_messages --failed`); never silently dropped."""
    reason = str(reason)[:ERROR_MAX_CHARS] or "unknown error"
    messages = list(Message.objects.filter(pk__in=list(message_ids), direction=Direction.INBOUND))
    rows = [Classification(message=m, status=Classification.Status.FAILED, error=reason) for m in messages]
    if rows:
        _store(rows)
    return len(rows)


def unclassified_messages(older_than: timedelta = timedelta(seconds=30)):
    """Inbound messages with no result at all (a lost task, a killed worker)."""
    return Message.objects.filter(
        direction=Direction.INBOUND, received_at__lt=timezone.now() - older_than, classifications__isnull=True
    )


# --- Corrections ------------------------------------------------------------------------------


def record_correction(message: Message, field: str, value: str, user=None) -> Correction:
    """Store an agent's correction as a labelled example. An intent correction also becomes an
    example of that intent, so the next intent refit learns from it."""
    from learning.models import Lane, Sentiment

    allowed = {
        Correction.Field.SENTIMENT: set(Sentiment.values),
        Correction.Field.LANE: set(Lane.values),
        Correction.Field.INTENT: set(Intent.objects.filter(enabled=True).values_list("slug", flat=True)),
    }
    if field not in allowed:
        raise InvalidCorrection(f"cannot correct {field!r}; choose one of {', '.join(sorted(allowed))}")
    if value not in allowed[field]:
        raise InvalidCorrection(f"{value!r} is not a valid {field}")
    current = message.classifications.filter(is_current=True).first()
    with transaction.atomic():
        correction = Correction.objects.create(
            message=message, classification=current, field=field, value=value, user=user,
            previous=getattr(current, field, "") if current else "", text=message.text[:5000],
        )
        if field == Correction.Field.INTENT and message.text.strip():
            IntentExample.objects.get_or_create(
                intent=Intent.objects.get(slug=value), text=message.text.strip()[:500],
                defaults={"source": IntentExample.Source.CORRECTION},
            )
    return correction
