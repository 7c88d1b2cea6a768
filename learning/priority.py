"""Priority score in [0, 1]: how soon care should look at a message. Each factor is stored with
the score so an agent can see why, and admins tune the weights (PriorityWeights)."""

import math


def score(weights, sentiment: dict, emotion: dict, intent_weight: float, intent_confidence: float,
          followers: int | None, recent_negative: int, is_negative: bool) -> tuple[float, dict]:
    reach = min(1.0, math.log10((followers or 0) + 1) / 6)  # a million followers is the top
    streak = recent_negative + (1 if is_negative else 0)
    factors = {
        "negativity": weights.negativity * sentiment.get("negative", 0.0),
        "anger": weights.anger * emotion.get("anger", 0.0),
        "intent": weights.intent * intent_weight * intent_confidence,
        "reach": weights.reach * reach,
        "history": weights.history * min(recent_negative, 5),
        "escalation": weights.escalation if is_negative and streak >= weights.escalation_count else 0.0,
    }
    factors = {k: round(v, 4) for k, v in factors.items()}
    return round(min(1.0, max(0.0, sum(factors.values()))), 4), factors
