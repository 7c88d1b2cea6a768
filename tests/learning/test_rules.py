"""Text normalisation, lanes and the priority score: the rules around the models."""

from learning import lanes, priority
from learning.ml.text import MAX_CHARS, normalize, readable
from learning.models import PriorityWeights

NEG = {"negative": 0.9, "neutral": 0.08, "positive": 0.02}
POS = {"negative": 0.02, "neutral": 0.08, "positive": 0.9}
NEU = {"negative": 0.05, "neutral": 0.9, "positive": 0.05}
ANGRY = {"anger": 0.8, "joy": 0.05, "optimism": 0.05, "sadness": 0.1}
SAD = {"anger": 0.1, "joy": 0.05, "optimism": 0.05, "sadness": 0.8}


def test_normalize_follows_tweeteval_conventions():
    text, flags = normalize("  @AcmeSupport my order https://t.co/x1 is late\n\nagain @bob ")
    assert text == "@user my order http is late again @user"
    assert flags == []
    assert normalize("mail me at me@example.com")[0] == "mail me at me@example.com"


def test_normalize_flags_what_it_changed():
    assert normalize("")[1] == ["empty"]
    assert normalize(None)[1] == ["empty"]
    assert normalize("   \n\t")[1] == ["empty"]
    text, flags = normalize("a" * 100_000)
    assert len(text) == MAX_CHARS and flags == ["truncated"]
    text, flags = normalize("bad \ud800 surrogate\x00")
    assert "\ud800" not in text and "\x00" not in text and flags == ["invalid_unicode"]
    text.encode("utf-8")  # storable


def test_readable_keeps_mentions_but_is_safe():
    assert readable("@Acme is great") == "@Acme is great"
    assert readable("x\udfff") == "x\ufffd"
    assert len(readable("b" * 10**6)) == MAX_CHARS


def test_lanes():
    decide, ctx = lanes.decide, lanes.Context
    assert decide(NEU, {}, "spam", 0.9, "noise").lane == "noise"
    assert decide(NEU, {}, "refund_request", 0.8, "issue").lane == "issue"
    assert decide(NEG, ANGRY, "", 0.1, "").lane == "issue"
    assert decide({"negative": 0.7, "neutral": 0.2, "positive": 0.1}, SAD, "", 0.1, "").lane == "ambivalence"
    assert decide(POS, {}, "praise", 0.9, "praise").lane == "praise"
    assert decide(POS, {}, "", 0.1, "").lane == "praise"
    assert decide({"negative": 0.45, "neutral": 0.1, "positive": 0.45}, {}, "", 0.1, "").lane == "ambivalence"
    assert decide(NEU, {}, "suggestion", 0.7, "ambivalence").lane == "ambivalence"
    assert decide(NEU, {}, "question", 0.7, "").lane == "issue"  # a question wants an answer
    # A reply that says nothing by itself keeps its conversation's lane.
    assert decide(NEU, {}, "follow_up", 0.8, "follow", ctx(conversation_lane="issue")).lane == "issue"
    assert decide(NEU, {}, "", 0.1, "", ctx(conversation_lane="praise")).reason.startswith("continues the conversation")
    assert decide(NEG, ANGRY, "follow_up", 0.8, "follow", ctx(conversation_lane="praise")).lane == "issue"
    # An unsure intent never decides: spam at 0.2 on an angry message is an issue.
    assert decide(NEG, ANGRY, "spam", 0.2, "noise").lane == "issue"
    # Even a sure "spam" on a furious message is a customer, not a promotion.
    assert decide(NEG, ANGRY, "spam", 0.9, "noise").lane == "issue"


def test_lanes_never_set_aside_what_was_sent_to_the_brand():
    decide, ctx = lanes.decide, lanes.Context
    # What the models cannot place, sent to the brand, goes to a person with the reason ...
    for unplaced in (decide(NEU, {}, "", 0, "", ctx(flags=("empty",))), decide(NEU, {}, "question", 0.1, ""),
                     decide(NEU, {}, "follow_up", 0.8, "follow"), decide(NEU, {}, "spam", 0.4, "noise")):
        assert unplaced.lane == "triage", unplaced
        assert "sent to the brand" in unplaced.reason
    # ... and overheard in public (a news feed) it may be set aside, saying so.
    overheard = decide(NEU, {}, "question", 0.1, "", ctx(addressed=False))
    assert overheard.lane == "noise" and "overheard" in overheard.reason
    # A language the sentiment models do not read: the intent decides, else triage; never noise.
    assert decide({}, {}, "refund_request", 0.7, "issue").lane == "issue"
    assert decide({}, {}, "praise", 0.7, "praise").lane == "praise"
    not_scored = decide({}, {}, "", 0.2, "")
    assert not_scored.lane == "triage" and "language not scored" in not_scored.reason


def test_lanes_follow_agents_corrections():
    corrected = lanes.decide(NEU, {}, "spam", 0.95, "noise",
                             lanes.Context(corrected_lane="praise", correction_reason="an agent put this in Praise"))
    assert (corrected.lane, corrected.reason) == ("praise", "an agent put this in Praise")


def _score(**kw):
    args = dict(sentiment=NEU, emotion={}, intent_weight=0.0, intent_confidence=0.0, followers=None,
                recent_negative=0, is_negative=False)
    args.update(kw)
    return priority.score(PriorityWeights(), **args)


def test_priority_orders_what_care_should_see_first():
    question, _ = _score(intent_weight=0.1, intent_confidence=0.9)
    churn, _ = _score(sentiment=NEG, intent_weight=0.5, intent_confidence=0.9, is_negative=True)
    assert churn > question
    quiet, _ = _score(sentiment=NEG, is_negative=True)
    loud, factors = _score(sentiment=NEG, is_negative=True, followers=1_000_000)
    assert loud > quiet and factors["reach"] > 0
    first, _ = _score(sentiment=NEG, is_negative=True, recent_negative=0)
    third, factors = _score(sentiment=NEG, is_negative=True, recent_negative=2)
    assert factors["escalation"] > 0 and third - first >= 0.25 + 0.2 - 1e-9
    capped, _ = _score(sentiment=NEG, emotion=ANGRY, intent_weight=5, intent_confidence=1, followers=10**9,
                       recent_negative=50, is_negative=True)
    assert capped == 1.0


def test_priority_weights_are_tunable():
    weights = PriorityWeights(negativity=0.0, anger=0.0, intent=0.0, reach=0.0, history=0.0, escalation=0.0)
    score, factors = priority.score(weights, NEG, ANGRY, 0.5, 1.0, 10**6, 4, True)
    assert score == 0.0 and set(factors.values()) == {0.0}


def test_lanes_read_a_problem_spread_over_several_intents():
    decide, ctx = lanes.decide, lanes.Context
    leaning = {"negative": 0.4, "neutral": 0.5, "positive": 0.1}
    # No single problem intent is sure, but together they hold most of the probability: an issue.
    spread = ctx(lane_mass={"issue": 0.7, "": 0.2, "praise": 0.1})
    decision = decide(leaning, {}, "technical_problem", 0.3, "issue", spread)
    assert decision.lane == "issue" and "technical_problem" in decision.reason
    # Without that majority, leaning negative stays ambivalence; a neutral question mass is an issue.
    assert decide(leaning, {}, "technical_problem", 0.3, "issue", ctx(lane_mass={"issue": 0.4})).lane == "ambivalence"
    assert decide(NEU, {}, "question", 0.3, "", ctx(lane_mass={"": 0.35, "issue": 0.2})).lane == "issue"
    assert decide({}, {}, "billing_problem", 0.3, "issue", ctx(lane_mass={"issue": 0.6})).lane == "issue"


def test_lanes_find_praise_behind_an_opener_or_a_little_negative_wording():
    decide = lanes.decide
    cheer = {"negative": 0.05, "neutral": 0.3, "positive": 0.65}
    # A short positive message the intent head reads as an opener is a thank-you, not a request ...
    some_praise = lanes.Context(lane_mass={"issue": 0.6, "praise": 0.3, "": 0.1})
    thanks = decide(cheer, {}, "greeting", 0.6, "issue", some_praise)
    assert thanks.lane == "praise" and "greeting" in thanks.reason
    # ... while a bare "hi 👋" (positive, but no praise in it) and a neutral opener want an answer,
    # and so does a positive question.
    assert decide(cheer, {}, "greeting", 0.9, "issue", lanes.Context(lane_mass={"issue": 0.95})).lane == "issue"
    assert decide(NEU, {}, "greeting", 0.6, "issue", some_praise).lane == "issue"
    assert decide(cheer, {}, "order_status", 0.6, "issue").lane == "issue"
    # Sure praise with some negative wording is praise while the positive side leads; else mixed.
    leading = {"negative": 0.3, "neutral": 0.1, "positive": 0.6}
    assert decide(leading, {}, "praise", 0.7, "praise").lane == "praise"
    assert decide({"negative": 0.5, "neutral": 0.1, "positive": 0.4}, {}, "praise", 0.7, "praise").lane == "ambivalence"
    assert decide(leading, {}, "", 0.1, "").lane == "ambivalence"  # no sure praise: mixed stays mixed
