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

import re
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
    text: str = ""  # the message, for what its words say outright (read_words)


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
    words = read_words(context.text)
    if words.emoji_praise:
        return LaneDecision("praise", max(pos, 0.5), "praise emoji")
    if words.sarcasm:
        return LaneDecision("issue", max(neg, 0.5), "a problem, with sarcastic thanks or praise")
    suggests = intent_lane == "ambivalence" and intent_confidence >= 0.5  # "could you add X? otherwise perfect"
    if words.asks and (words.thanks or words.praise) and not suggests:
        return LaneDecision("issue", max(asks, 0.5), "thanks or praise, and a question to answer")
    if (words.thanks or words.praise) and words.problem and not words.asks:
        if words.resolved:
            return LaneDecision("praise", max(pos, 0.5), "thanks for a fix")
        if words.praise and sure_intent and intent_lane == "praise":
            return LaneDecision("praise", intent_confidence, f"praise in its words and its intent ({intent})")
        if words.thanks and neg >= pos:
            return LaneDecision("issue", max(neg, 0.5), "thanks, and a problem still open")
    if not (words.problem or words.asks) and (words.praise or (words.thanks and words.resolved)
                                              or ((words.thanks and words.short) or words.ack)
                                              and neg < STRONG and (pos > neg or words.thanks)):
        return LaneDecision("praise", max(pos, 0.5), "thanks or praise in so many words")
    if words.asks and not words.problem and sure_intent and intent_lane == "":
        return LaneDecision("issue", intent_confidence, f"a question to answer ({intent})")
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


# --- What the words say outright --------------------------------------------------------------
# The heads miss praise that a reader cannot: the sentiment head reads "not a single dropped call
# since I switched" or "delayed 2 hours but the crew handled it brilliantly" as strongly negative,
# and the intent head calls a bare "😍😍😍" or "that fixed it, ty" a greeting. A few explainable word
# rules read what the customer says in so many words (thanks, a compliment, praise emoji) and hold
# back wherever a problem, a real question or sarcasm is also named. After a "but", what follows is
# what the customer means. Tuned on the hand-written lane dev set (learning/eval/lane_dev_set.jsonl),
# never on the care set or the airline tweets, which stay evaluation.

_PRAISE = re.compile(
    r"\b(kudos|props to|shout[- ]?outs?|hats off|big up|well (done|handled)|keep it up|top (marks|service)"
    r"|above and beyond|(great|good|nice|amazing|awesome|fantastic|brilliant|excellent|wonderful|fab|terrific|stellar"
    r"|superb) (job|work|service|crew|staff|team|flight|experience|touch|people)"
    r"|you (guys |all )?(rock|rule)|legends?|lifesavers?|(you'?re|you are|u r|ur|y'?all are) (the best|a star|awesome"
    r"|amazing|great)|(love|loved|luv|adore) (you|u|ya|y'?all|it|this|the|your|ur|how)|luv|loving|impress(ed|ive)"
    r"|outstanding|brilliant|fantastic|wonderful|superb|excellent|amazing|awesome|lovely|grateful|delighted|thrilled"
    r"|painless|flawless|seamless|friendly|helpful|best \w+ (ever|in years)|best (airline|service|crew|network|bank"
    r"|app|team|decision)|nailed|a breath of fresh air|a star|made my day|perfect(ly)?|10/10|five stars"
    # de, fr, es, pt, it, nl, pl, tr
    r"|klasse|spitze|die besten|super (nett|freundlich|schnell)|bravo|génia(l|ux)|parfait|impeccable|au top"
    r"|le meilleur|genial|los mejores|me encanta|enhorabuena|un crack|increíble|súper amable|incríve(l|is)|arrasaram"
    r"|adorei|nota 10|excelente|maravilhos[oa]|super atenciosos|complimenti|bravi(ssimi)?|ottimo|gentilissim[io]"
    r"|eccellente|geweldig|top geholpen|świetn\w*|harika)\b"
    r"|最高|素晴らし|親切|丁寧|ممتاز|رائع",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"\b(thanks?|thank (you|u)|thx|tks|ty|tysm|cheers|much appreciated|appreciated?|danke\w*|vielen dank|merci"
    r"|gracias|obrigad[oa]|valeu|grazie|bedankt|dank (je|u|jullie)( wel)?|dziękuj\w*|teşekkür\w*|спасибо)\b"
    r"|ありがと|شكرا",
    re.IGNORECASE,
)
# Phrases that use a problem's words to praise: taken out before problems are looked for.
_PRAISING_NEGATIONS = re.compile(
    r"\b(can'?t wait|can'?t thank (you|u) enough|could(n'?t| not) (be happier|ask for more)|never let (me|us) down"
    r"|no (problem|problems|issues?|fuss|complaints?|queue|hold music|stress)|not a single \w+( \w+)?|not bad)\b",
    re.IGNORECASE,
)
_PROBLEM = re.compile(
    r"\b(not (working|work|loading|fixed|happy|received|arrived|true)|(doesn'?t|don'?t|didn'?t|won'?t|can'?t|cannot"
    r"|couldn'?t|isn'?t|wasn'?t|haven'?t|hasn'?t|aren'?t) \w+|(did|does|do|is|was|has|have) not|still (not|no|broken"
    r"|waiting|down|haven'?t|nothing)|nobody|no one|no idea|broken|broke|breaking|damaged|crash\w*|lose|lost|losing"
    r"|missing|missed|mess|wrong|deleted|demora|charged|overcharg\w*|refund\w*|cancel\w*|delay\w*|pending|stuck"
    r"|stranded|locked out|waiting|on hold|again|worst|terrible|awful|horrible|horrid|useless|ridiculous"
    r"|joke|nonsense|unacceptable"
    r"|disappoint\w*|frustrat\w*|annoy\w*|rude|pissed|lied|for nothing|cold|slow|outage|error|fail\w*|problems?"
    r"|issues?|sucks?|hate|bad\w*|late|no thanks?|after \d+ ?(min\w*|hours?|hrs?|days?)"
    r"|(not|n'?t|less th[ae]n|not very|not too|not really|not that) (very |too |really |so |that )?(helpful|impressed"
    r"|friendly|kind|nice|great|good|happy)"
    r"|would be (nice|lovely|great|good|helpful)"
    r"|nicht|kein\w*|kaputt|immer noch|weg|toujours pas|rien|aucun|pas reçu|remboursement|sigo sin|sin \w+|no funciona"
    r"|nadie|ninguém|não|continua sem|sem chegar|non è|non ho|ancora|rimborso|niet|nie)\b"
    r"|(sucks|fail|worst)\b|:-?\(|:'\(",
    re.IGNORECASE,
)
_SARCASM = re.compile(
    r"\b(thanks?( you)? for (nothing|patroni[sz]ing)|merci pour rien|gracias por nada|danke für nichts"
    r"|obrigad[oa] por nada|love how|(great|awesome|amazing|brilliant|wonderful|perfect),? (another|again)"
    r"|just (great|brilliant|perfect|wonderful)|yeah? right|amazing how"
    r"|(nice|great|awesome) (job|work) (breaking|losing|ruining)|thanks a lot|really appreciated)\b|🙃|🙄",
    re.IGNORECASE,
)
# A thank-you for a fix names the problem it fixed ("thanks for rebooking me after the cancellation").
_RESOLVED = re.compile(
    r"\b(fixed|sorted|resolved|solved|re-?booked|found|rescued|restored|refunded|(works|working|worked) (now|again)"
    r"|got me (home|there|on)|all good now|back (up|on|online))\b",
    re.IGNORECASE,
)
# A short, happy close of a conversation ("sounds good!", "will do 👍", "you bet :)").
_ACK = re.compile(
    r"^\W*(sounds (good|great|perfect)|will do|sure thing|you bet|count me in|sign me up|deal|ok(ay)?,? (great|cool"
    r"|perfect)|perfe[ck]t|great|cool|nice|sweet|yay|absolutely|no worries|d'accord|passt|vale|perfetto)\b",
    re.IGNORECASE,
)
_EMOTICON = re.compile(r"(?<![\w:/]):-?[)D]|;-?\)|=\)|<3")
_CONTRAST = re.compile(r"\b(but|however|though|although|still,|yet|on the other hand|aber|mais|pero|mas|ma|maar|jedoch"
                       r"|cependant)\b", re.IGNORECASE)
# "Despite the delay, the crew was great": the problem a few words after "despite" is what the praise
# overcame, not the customer's point; what follows it still counts ("despite paying more, it's slow").
_CONCESSION = re.compile(r"\b(despite|in spite of|even with|trotz|malgré|a pesar de|apesar d[aeo]s?|nonostante)"
                         r"( [^\s,.;!?]+){1,4}", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"(^|[.!?,:;]\s*|\b(and|but|so|also|btw|though)\s+)(how|what|when|where|which|who|why|can|could|would|will|is|are"
    r"|do|does|did|should|may|any|anyone|wie|wann|wo|was|kann|können|gibt es|comment|quand|où|est-ce|pouvez|puis-je"
    r"|cómo|cuándo|dónde|qué|puedo|pueden|como|quando|onde|posso|podem|come|dove|qual|quale)\b",
    re.IGNORECASE,
)
_RHETORICAL = re.compile(
    r"\b(how (awesome|cool|great|amazing|nice|lucky|good|sweet|lovely|fab|fantastic|brilliant)"
    r"|who (else|knew|does that)|what more|can i just|is it just me|how can i not|cómo no|comment ne pas|what a)\b",
    re.IGNORECASE,
)
_ASK_PHRASES = re.compile(r"\b(mind if i ask|can you tell me|could you tell me|let me know (when|how|if you can))\b",
                          re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
_PRAISE_EMOJI = set("❤♥💙💚💛💜🧡🤍😍🥰😘😊☺🙂😀😃😄😁🤗👍👏🙌🎉🥳✨⭐🌟💯🔥😎🤩💪🏆")
_UNHAPPY_EMOJI = set("😡😠😤😞😢😭👎💔🙃😒😩😫🤬😕☹🙁😔😣😖🙄")
SHORT_WORDS = 12  # a thank-you of a few words closes a conversation; a long one tells a story


@dataclass(frozen=True)
class Words:
    praise: bool = False  # a compliment in so many words ("kudos", "top marks", "you rock"), after any "but"
    thanks: bool = False  # thanks, anywhere
    resolved: bool = False  # a fix named ("sorted", "rebooked me", "works now")
    problem: bool = False  # a problem named ("still broken", "refund", "delayed"), after any "but"
    asks: bool = False  # a real question, not a rhetorical one ("how awesome is that?")
    sarcasm: bool = False  # "thanks for nothing", "love how...", 🙃, with a problem named anywhere
    emoji_praise: bool = False  # only emoji, and they cheer
    short: bool = False
    ack: bool = False  # a short happy close: "sounds good!", "will do 👍"


def read_words(text: str) -> Words:
    if not text:
        return Words()
    body = re.sub(r"(?:^|\s)@\w+|https?://\S+", " ", text).replace("#", " ")
    letters = bool(_LETTERS.search(body))
    emoji = {c for c in body if c in _PRAISE_EMOJI or c in _UNHAPPY_EMOJI}
    cleaned = _CONCESSION.sub(" ", _PRAISING_NEGATIONS.sub(" ", body))
    split = _CONTRAST.search(cleaned)
    tail = cleaned[split.end():] if split else cleaned  # what comes after "but" is what the customer means
    asks = bool(_ASK_PHRASES.search(body)) or any(
        _QUESTION_START.search(sentence.strip()) and not _RHETORICAL.search(sentence)
        for sentence in re.findall(r"[^?？]*[?？]", body))
    happy_emoji = bool(emoji & _PRAISE_EMOJI) and not emoji & _UNHAPPY_EMOJI
    return Words(
        praise=bool(_PRAISE.search(tail)) or bool(_PRAISING_NEGATIONS.search(body) and not split)
        or (happy_emoji and letters),
        thanks=bool(_THANKS.search(body)),
        resolved=bool(_RESOLVED.search(body)),
        problem=bool(_PROBLEM.search(tail)) or bool(emoji & _UNHAPPY_EMOJI),
        asks=asks,
        sarcasm=bool(_SARCASM.search(body)) and bool(_PROBLEM.search(cleaned)),
        emoji_praise=not letters and bool(emoji) and not emoji & _UNHAPPY_EMOJI,
        short=len(body.split()) <= SHORT_WORDS,
        ack=len(body.split()) <= 6 and bool(_ACK.search(body) or _EMOTICON.search(body) or happy_emoji),
    )
