"""The set-based rebuild (PostgreSQL: INSERT ... SELECT, no row in Python) makes exactly the rows
the row-by-row rebuild makes: rollups and conversation moods, including topics that are not what
`term_ids` counts (strings, zero, floats, repeats, not a list)."""

from __future__ import annotations

import pytest
from django.db import connection

from learning import rollups
from learning.models import Classification, ConversationMood, Rollup
from listening.models import Message
from tests.insight.test_panels import world  # noqa: F401 - the generated world

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the set-based rebuild is PostgreSQL's")


def _snapshot():
    fields = ("grain", "dim", "term_id", "bucket", "connector_id", "channel", "lane", "language", "value")
    table = {tuple(row[:-1]): row[-1] for row in Rollup.objects.values_list(*fields, "count")}
    moods = set(ConversationMood.objects.values_list(
        "conversation_id", "connector_id", "channel", "language", "first_at", "first_sentiment", "last_at",
        "last_sentiment", "inbound_count"))
    return table, moods


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_the_sql_rebuild_equals_the_python_rebuild(world, settings, zone):  # noqa: F811
    settings.CXM_REPORT_TIME_ZONE = zone  # Kolkata: local midnight is not an UTC hour
    current = list(Classification.objects.filter(is_current=True, status=Classification.Status.OK).order_by("pk"))
    odd = [
        [{"term_id": "7"}, {"term_id": 0}, {"term_id": 2.5}, "text", {"name": "no id"}],
        {"term_id": current[0].topics[0]["term_id"]} if current[0].topics else {"term_id": 1},
        [{"term_id": t["term_id"]} for t in current[1].topics] * 2,
        "not a list",
    ]
    for row, topics in zip(current[:4], odd, strict=True):
        Classification.objects.filter(pk=row.pk).update(topics=topics)
    # two messages of one conversation at one instant: the lowest id decides the mood
    first = current[6].message
    Message.objects.filter(conversation_id=first.conversation_id).update(sent_at=first.sent_at)

    rollups._rebuild_in_python(chunk=50)
    python = _snapshot()
    rollups._rebuild_in_sql()
    sql = _snapshot()
    assert python[0] and python[1]
    assert sql[0] == python[0]
    assert sql[1] == python[1]
