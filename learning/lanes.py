"""The lane decides what care does with a message: resolve an issue, amplify praise, address
ambivalence before it turns, or ignore noise. Rules, not a model: they read the heads' outputs and
the intent's own lane (admins set it per intent), and they are written to be explained.

Order matters: spam first, then what the intent says outright, then the sentiment. A message that
continues a conversation (device details, an order number, "ok done") and says nothing by itself
keeps the conversation's lane instead of falling into noise."""

from dataclasses import dataclass

INTENT_MIN = 0.35  # below this the intent head is guessing; let sentiment decide
MIXED_MIN = 0.25  # both positive and negative at least this likely: the customer is on the fence
STRONG = 0.6


@dataclass(frozen=True)
class LaneDecision:
    lane: str
    confidence: float
    reason: str


def decide(sentiment: dict, emotion: dict, intent: str, intent_confidence: float, intent_lane: str,
           flags=(), conversation_lane: str = "") -> LaneDecision:
    if "empty" in flags or not sentiment:
        return LaneDecision(conversation_lane or "noise", 1.0, "no text to read")
    neg, pos = sentiment.get("negative", 0.0), sentiment.get("positive", 0.0)
    sure_intent = intent and intent_confidence >= INTENT_MIN
    if sure_intent and intent_lane == "noise":
        return LaneDecision("noise", intent_confidence, f"intent {intent}")
    if sure_intent and intent_lane == "issue":
        return LaneDecision("issue", intent_confidence, f"intent {intent}")
    if neg >= MIXED_MIN and pos >= MIXED_MIN:
        return LaneDecision("ambivalence", min(neg, pos) * 2, "mixed sentiment")
    if sure_intent and intent_lane == "praise" and pos >= neg:
        return LaneDecision("praise", min(intent_confidence, max(pos, 0.5)), f"intent {intent}")
    if sure_intent and intent_lane == "ambivalence":
        return LaneDecision("ambivalence", intent_confidence, f"intent {intent}")
    if neg >= STRONG:
        sad = emotion.get("sadness", 0.0) > emotion.get("anger", 0.0) and neg < 0.85
        if sad and not sure_intent:
            return LaneDecision("ambivalence", neg, "disappointed")
        return LaneDecision("issue", neg, "negative")
    if pos >= STRONG:
        return LaneDecision("praise", pos, "positive")
    if sure_intent and intent_lane == "follow" and conversation_lane:
        return LaneDecision(conversation_lane, intent_confidence, "continues the conversation")
    if neg >= MIXED_MIN:
        return LaneDecision("ambivalence", neg, "leaning negative")
    if sure_intent and intent_lane != "follow":  # a neutral question still wants an answer
        return LaneDecision("issue", intent_confidence, f"intent {intent}")
    if conversation_lane:
        return LaneDecision(conversation_lane, max(sentiment.get("neutral", 0.0), 0.5), "continues the conversation")
    return LaneDecision("noise", max(sentiment.get("neutral", 0.0), 1 - intent_confidence), "neutral, nothing asked")
