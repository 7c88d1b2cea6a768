"""What the words say outright (learning.lanes.read_words): thanks, compliments and praise emoji
reach the praise lane when the heads misread them; a problem, a real question or sarcasm named
beside them holds the rule back. And the hand-written lane dev set they were tuned on stays apart
from the care set, which is evaluation."""

from collections import Counter

from learning.lanes import Context, decide, read_words
from learning.ml.care_eval import CARE_SET, LANE_DEV_SET, load_care_set

NEG = {"negative": 0.9, "neutral": 0.07, "positive": 0.03}  # the sentiment head misreading praise
NEU = {"negative": 0.2, "neutral": 0.6, "positive": 0.2}
POS = {"negative": 0.03, "neutral": 0.07, "positive": 0.9}


def lane(text, sentiment=NEU, intent="", confidence=0.1, intent_lane="", **context):
    return decide(sentiment, {}, intent, confidence, intent_lane, Context(text=text, **context))


def test_praise_in_so_many_words_reaches_praise_whatever_the_sentiment_head_says():
    for text in ("@Acme not a single dropped call since I switched. Should have done it years ago",
                 "@Acme the engineer turned up early and tidied the cables. Top marks",
                 "@Acme delayed 2 hours but the gate staff kept everyone updated. Well handled",
                 "@Acme despite the storm the crew was fantastic, thank you",
                 "@Acme the outage was annoying but you fixed it fast, appreciated",
                 "Vielen Dank, ihr seid die Besten", "Grazie mille, complimenti al tecnico"):
        decision = lane(text, NEG, "complaint", 0.45, "issue")
        assert decision.lane == "praise", (text, decision)


def test_emoji_short_thanks_and_happy_closes_are_praise():
    cheerful = {"negative": 0.05, "neutral": 0.55, "positive": 0.4}  # what the heads see in "sounds good!"
    for text in ("@Acme 😍😍😍", "👏👏👏", "💙✈️💙", "that fixed it, ty", "sounds good!", "you bet :)",
                 "Merci beaucoup !"):
        decision = lane(text, cheerful, "greeting", 0.7, "issue")
        assert decision.lane == "praise", (text, decision)
    assert lane("hi", NEU, "greeting", 0.7, "issue").lane == "issue"  # an opener still wants an answer
    assert lane("@Acme 😡😡", NEG, "complaint", 0.5, "issue").lane == "issue"


def test_rhetorical_questions_are_praise_real_questions_are_answered():
    rhetorical = "@Acme how awesome is your crew?! They sang for my mum"
    assert lane(rhetorical, POS, "suggestion", 0.4, "ambivalence").lane == "praise"
    assert lane("@Acme who else delivers hot food in a snowstorm? Thank you!", POS).lane == "praise"
    for text in ("thank you! how do I add my partner to the booking?",
                 "@Acme fab service today, is the 18:40 running on Sunday too?",
                 "Thanks Ana. When will the engineer come though?"):
        assert lane(text, POS, "suggestion", 0.4, "ambivalence").lane == "issue", text


def test_problems_and_sarcasm_hold_the_praise_rules_back():
    for text in ("thanks for nothing @Acme, still no internet after 3 days",
                 "@Acme great, another 3 hour delay. Thanks a lot",
                 "@Acme love how you charged me twice 🙃",
                 "@Acme awesome job breaking the app on every TV",
                 "Merci pour rien, toujours pas de connexion"):
        assert lane(text, POS, "praise", 0.8, "praise").lane == "issue", text
    assert lane("still broken, thanks", NEU).lane == "issue"
    assert lane("@Acme really not impressed with the new fees", NEU).lane != "praise"
    assert lane("@Acme used to love you guys, but the last three orders were a mess", NEU).lane != "praise"
    assert read_words("@Acme the chat agent was not very helpful").problem


def test_the_words_never_hide_a_customer_or_overrule_spam_and_corrections():
    spam = lane("WIN a FREE iPhone, amazing prizes, thank you!! bit.ly/x", NEU, "spam", 0.9, "noise")
    assert spam.lane == "noise"
    assert lane("love you guys", POS, corrected_lane="issue").lane == "issue"  # an agent's word comes first
    assert lane("love you guys", POS).lane == "praise"
    assert read_words("").praise is False and read_words("word " * 20_000).short is False


def test_lane_dev_set_is_the_tuning_set_apart_from_the_care_set():
    dev, care = load_care_set(LANE_DEV_SET), load_care_set(CARE_SET)
    assert len(dev) >= 150
    assert len({r["lang"] for r in dev}) >= 8
    lanes = Counter(r["lane"] for r in dev)
    assert {"praise", "issue", "ambivalence", "noise"} <= set(lanes)
    normal = {" ".join(r["text"].lower().split()) for r in care}
    assert [r["text"] for r in dev if " ".join(r["text"].lower().split()) in normal] == []
