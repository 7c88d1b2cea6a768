"""Recovered customers: conversations that began negative, and how many ended neutral or
positive. Counts `ConversationMood` rows (kept by the workers with the rollups)."""

from __future__ import annotations

from django.db.models import Count, Q

from insight.filters import Filters
from insight.panels.care import _side_by_side
from insight.panels.registry import Panel, register
from learning.models import ConversationMood

# --- Recovered customers ------------------------------------------------------------------------


def _recovery(f: Filters) -> dict:
    moods = ConversationMood.objects.filter(first_sentiment="negative", first_at__gte=f.start_at,
                                            first_at__lt=f.end_at, connector_id__in=f.connector_ids)
    if f.channels:
        moods = moods.filter(channel__in=f.channels)
    if f.languages:
        moods = moods.filter(language__in=f.languages)
    followed = Q(inbound_count__gte=2)
    recovered = followed & Q(last_sentiment__in=["neutral", "positive"])
    by_channel = []
    for row in moods.values("channel").annotate(
        began=Count("pk"), followed=Count("pk", filter=followed), recovered=Count("pk", filter=recovered)
    ).order_by("channel"):
        by_channel.append({"channel": row["channel"], "began_negative": row["began"], "followed_up": row["followed"],
                           "recovered": row["recovered"],
                           "share": round(row["recovered"] / row["followed"], 4) if row["followed"] else None})
    began = sum(r["began_negative"] for r in by_channel)
    followed_up = sum(r["followed_up"] for r in by_channel)
    back = sum(r["recovered"] for r in by_channel)
    return {"began_negative": began, "followed_up": followed_up, "recovered": back,
            "still_negative": followed_up - back, "share": round(back / followed_up, 4) if followed_up else None,
            "by_channel": by_channel}


def recovered(f: Filters) -> dict:
    """Conversations whose first customer message (in the range) was negative; of those the
    customer wrote in again, the share whose latest message is neutral or positive."""
    calls = {"now": (_recovery, f)}
    if f.compare:
        calls["previous"] = (_recovery, f.previous())
    done = _side_by_side(calls)  # the two periods side by side, each on its own connection
    now, previous = done["now"], done.get("previous")
    if previous:
        previous.pop("by_channel")
    return {**now, "previous": previous, "ignored": ["lane", "term"]}


def _recovered_rows(data: dict):
    fields = ["began_negative", "followed_up", "recovered", "share"]
    rows = [["(all)", *(data[f] for f in fields)]]
    rows += [[item["channel"] or "(none)", *(item[f] for f in fields)] for item in data["by_channel"]]
    return ["channel", *fields], rows


register(Panel(
    name="recovered", title="Recovered customers",
    about="Conversations that began negative and ended neutral or positive",
    query=recovered, csv=_recovered_rows, renderer="recovered", order=50,
))
