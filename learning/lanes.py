"""The lane decides what care does with a message: resolve an issue, amplify praise, address
ambivalence before it turns, take a look at what the models cannot place (triage), or set spam
aside (noise). Rules, not a model: they read the heads' outputs and the intent's own lane (admins
set it per intent), and they are written to be explained.

No customer goes unheard: a model's guess only ranks and routes. Noise is confident spam, or a
message overheard in public (a feed, a search) that asks nothing of the brand; a message addressed
to the brand (a direct message, a mention, a reply, a review, an email) that the models cannot
place goes to triage, never to noise.

Order matters: agents' lane corrections of the same or a near-identical text first, then spam,
then what the intent says outright, then the sentiment. A message that continues a conversation
(device details, an order number, "ok done") and says nothing by itself keeps the conversation's
lane."""

from dataclasses import dataclass, field

INTENT_MIN = 0.35  # below this the intent head is guessing; let sentiment decide
# Spam is rare in care traffic and a wrong "spam" hides a customer: the intent head must be sure,
# and a strongly negative message is a customer's problem, not a promotion.
SPAM_MIN = 0.6
MIXED_MIN = 0.25  # both positive and negative at least this likely: the customer is on the fence
STRONG = 0.6
# A fine taxonomy splits a problem over several intents (technical, billing, delivery, refund...):
# no one of them may be sure while together they hold most of the probability. A majority of the
# intent head's probability on intents that point to a lane says that lane.
MAJORITY = 0.5
# Intents that only open a conversation ("hi", "anyone there?"): they point to issue because an
# opener wants attention, but a short opener that is clearly positive ("thanks, we did!", "sign me
# up!") is a thank-you or a cheer when the intent head also sees some praise in it; a bare "hi 👋"
# reads as positive too, but sees none, and stays an opener that wants an answer.
OPENERS = frozenset({"greeting"})
CHEER_PRAISE_MIN = 0.15


@dataclass(frozen=True)
class LaneDecision:
    lane: str
    confidence: float
    reason: str


@dataclass(frozen=True)
class Context:
    """What the lane rules know beyond the text's scores."""

    flags: tuple = ()
    conversation_lane: str = ""  # the lane of the conversation this message continues, if any
    addressed: bool = True  # sent to the brand (DM, mention, reply, review, email), not overheard
    corrected_lane: str = ""  # what agents said of this text, or of one nearly identical
    correction_reason: str = ""
    # The intent head's probability summed per lane its intents point to ("" for questions).
    lane_mass: dict = field(default_factory=dict)


def decide(sentiment: dict, emotion: dict, intent: str, intent_confidence: float, intent_lane: str,
           context: Context = Context()) -> LaneDecision:
    if context.corrected_lane:
        return LaneDecision(context.corrected_lane, 1.0, context.correction_reason or "an agent's correction")
    if "empty" in context.flags:
        return _unplaced(context, "no text to read")
    neg, pos = sentiment.get("negative", 0.0), sentiment.get("positive", 0.0)
    sure_intent = bool(intent) and intent_confidence >= INTENT_MIN
    problem = context.lane_mass.get("issue", 0.0)  # problems and requests
    asks = problem + context.lane_mass.get("", 0.0)  # ... and questions
    if intent_lane == "noise" and intent_confidence >= SPAM_MIN and neg < STRONG:
        return LaneDecision("noise", intent_confidence, f"spam ({intent})")
    cheer = (intent in OPENERS and pos >= 0.5 and pos > neg
             and context.lane_mass.get("praise", 0.0) >= CHEER_PRAISE_MIN)
    if sure_intent and intent_lane == "issue" and not cheer:
        return LaneDecision("issue", intent_confidence, f"intent {intent}")
    if not sentiment:  # a language the sentiment models do not read: the intent alone decides
        if sure_intent and intent_lane in ("praise", "ambivalence"):
            return LaneDecision(intent_lane, intent_confidence, f"intent {intent}")
        if (sure_intent and intent_lane not in ("follow", "noise")) or asks >= MAJORITY:
            return LaneDecision("issue", max(intent_confidence, asks), f"intent {intent}")
        return _unplaced(context, "language not scored")
    # Praise the intent head is sure of reads through a little negative wording ("painless flight
    # after last week's mess, the crew was fantastic"), as long as the positive side leads.
    if sure_intent and intent_lane == "praise" and pos >= neg:
        return LaneDecision("praise", min(intent_confidence, max(pos, 0.5)), f"intent {intent}")
    if neg >= MIXED_MIN and pos >= MIXED_MIN:
        return LaneDecision("ambivalence", min(neg, pos) * 2, "mixed sentiment")
    if cheer:
        return LaneDecision("praise", pos, f"positive {intent}")
    if sure_intent and intent_lane == "ambivalence":
        return LaneDecision("ambivalence", intent_confidence, f"intent {intent}")
    if neg >= STRONG:
        sad = emotion.get("sadness", 0.0) > emotion.get("anger", 0.0) and neg < 0.85
        if sad and not sure_intent:
            return LaneDecision("ambivalence", neg, "disappointed")
        return LaneDecision("issue", neg, "negative")
    if pos >= STRONG:
        return LaneDecision("praise", pos, "positive")
    if sure_intent and intent_lane == "follow" and context.conversation_lane:
        return LaneDecision(context.conversation_lane, intent_confidence, "continues the conversation")
    if problem >= MAJORITY:
        return LaneDecision("issue", problem, f"a problem or request (most likely {intent})")
    if neg >= MIXED_MIN:
        return LaneDecision("ambivalence", neg, "leaning negative")
    if (sure_intent and intent_lane not in ("follow", "noise")) or asks >= MAJORITY:
        # a neutral question still wants an answer
        return LaneDecision("issue", max(intent_confidence, asks), f"intent {intent}")
    return _unplaced(context, "neutral, nothing the models could place")


def _unplaced(context: Context, why: str) -> LaneDecision:
    """What the models cannot place: the conversation's lane if it continues one; else a look by a
    person when it was sent to the brand; noise only when it was overheard in public."""
    if context.conversation_lane:
        return LaneDecision(context.conversation_lane, 0.5, f"continues the conversation ({why})")
    if context.addressed:
        return LaneDecision("triage", 0.5, f"sent to the brand; {why}")
    return LaneDecision("noise", 0.5, f"overheard in public; {why}")
