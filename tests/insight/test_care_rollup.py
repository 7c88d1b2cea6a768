"""The care rollup (insight.care_rollup): triggers keep it equal to a recount of cases and replies
through every kind of write, and the care panel read from it equals the raw reference (counts
exactly, medians and p90s within one histogram bin)."""

from __future__ import annotations

import random
import statistics
from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bench import insight_raw
from insight import care_rollup
from insight.models import CareRollup
from insight.panels.registry import PANELS
from listening.models import Conversation
from responses.models import Case, CaseStatus, Reply, SlaState
from tests.insight.test_panels import _filters, world  # noqa: F401 - the generated world

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the care rollup is PostgreSQL's")


def _rows() -> dict:
    """The rollup's counts per key, summed over the shards that writers spread them across."""
    from django.db.models import Sum

    fields = ("grain", "bucket", "detail", "team_id", "connector_id", "channel", "lane", "metric", "user_id", "bin")
    summed = CareRollup.objects.values_list(*fields).annotate(total=Sum("n")).order_by()
    return {tuple(row[:-1]): row[-1] for row in summed if row[-1]}


def _recount() -> dict:
    """The rows a rebuild from the raw tables makes (rolled back afterwards: the rows the triggers
    kept stay for the caller)."""
    from django.db import transaction

    kept = _rows()
    with transaction.atomic():
        sid = transaction.savepoint()
        care_rollup.rebuild()
        fresh = _rows()
        transaction.savepoint_rollback(sid)
    assert _rows() == kept
    return fresh


def test_bins_and_percentiles(db):
    assert care_rollup.bounds(0) == (0.0, 1.0)
    low, high = care_rollup.bounds(10)
    assert high / low == pytest.approx(care_rollup.RATIO)
    with connection.cursor() as cursor:
        cursor.execute("SELECT insight_care_bin(0.4), insight_care_bin(1), insight_care_bin(3600), "
                       "insight_care_bin(-5)")
        b0, b1, hour, negative = cursor.fetchone()
    assert (b0, b1, negative) == (0, 1, 0)
    low, high = care_rollup.bounds(hour)
    assert low <= 3600 < high
    rng = random.Random(3)
    values = [rng.lognormvariate(7, 1.5) for _ in range(501)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT insight_care_bin(v) FROM unnest(%s::float8[]) AS v", [values])
        histogram = {}
        for (b,) in cursor.fetchall():
            histogram[b] = histogram.get(b, 0) + 1
    exact_median = statistics.median(values)
    exact_p90 = insight_raw._interpolated(values, 0.9)
    assert abs(care_rollup.percentile(histogram, 0.5) - exact_median) <= care_rollup.tolerance(exact_median)
    assert abs(care_rollup.percentile(histogram, 0.9) - exact_p90) <= care_rollup.tolerance(exact_p90)
    assert care_rollup.percentile({}, 0.5) is None


def test_month_and_day_slots():
    assert care_rollup.months_inside(date(2026, 10, 18), date(2026, 11, 20)) is None
    assert care_rollup.months_inside(date(2026, 9, 18), date(2026, 11, 30)) == (date(2026, 10, 1), date(2026, 12, 1))
    assert care_rollup.months_inside(date(2026, 10, 1), date(2026, 10, 31)) == (date(2026, 10, 1), date(2026, 11, 1))
    assert care_rollup.months_inside(date(2026, 12, 1), date(2027, 1, 31)) == (date(2026, 12, 1), date(2027, 2, 1))
    grains = [grain for grain, *_ in care_rollup.slots(date(2026, 8, 20), date(2026, 11, 20))]
    assert grains == ["m", "d", "d"]


def test_triggers_keep_the_rollup_equal_to_a_recount(world, django_user_model):  # noqa: F811
    care_rollup.rebuild()  # in the world's reporting time zone (America/New_York)
    assert care_rollup.kept()
    assert _rows() == _recount() and _rows()
    team_a, team_b = world["teams"]
    agent = world["agent"]
    cases = list(Case.objects.order_by("pk"))
    now = timezone.now()
    # answered, resolved, reopened, reassigned, moved: through save() and queryset.update()
    unanswered = [c for c in cases if c.first_response_at is None]
    first = unanswered[0]
    first.first_response_at = first.opened_at + timedelta(minutes=42)
    first.save()
    Case.objects.filter(pk=unanswered[1].pk).update(first_response_at=now, status=CaseStatus.OPEN)
    resolved = [c for c in cases if c.resolved_at is not None]
    Case.objects.filter(pk__in=[c.pk for c in resolved[:3]]).update(resolved_at=None, status=CaseStatus.OPEN)
    moved = resolved[5]
    moved.team = team_b if moved.team_id == team_a.pk else team_a
    moved.opened_at -= timedelta(days=40)  # another day and month: its replies move with it
    moved.lane = "praise" if moved.lane != "praise" else "issue"
    moved.save()
    Case.objects.filter(pk=cases[7].pk).update(assignee=None, sla_minutes=15, priority=0.5)
    Case.objects.filter(pk=cases[8].pk).update(priority=0.9, sla_state=SlaState.BREACHED)  # nothing counted moves
    # replies: written, made automatic, re-authored, deleted; a case deleted with its replies
    case = cases[10]
    Reply.objects.create(case=case, author=agent, text="more", idempotency_key="more-1")
    auto = Reply.objects.create(case=case, author=None, text="auto", idempotency_key="auto-1", automatic=True)
    Reply.objects.filter(pk=auto.pk).update(automatic=False)
    Reply.objects.filter(case=cases[11]).update(author=world["admin"])
    Reply.objects.filter(case=cases[12]).delete()
    cases[13].delete()
    # and a new case, opened then answered
    source = cases[14].conversation
    conversation = Conversation.objects.create(
        connector=source.connector, channel=source.channel, external_id="new-thread", contact=source.contact,
        started_at=now, last_message_at=now)
    new = Case.objects.create(conversation=conversation, connector=source.connector, channel=source.channel,
                              team=team_a, lane="issue", opened_at=now - timedelta(hours=2), sla_minutes=60)
    Reply.objects.create(case=new, author=agent, text="hello", idempotency_key="new-1")
    new.first_response_at = now
    new.assignee = agent
    new.save(update_fields=["first_response_at", "assignee"])
    assert _rows() == _recount()


def test_the_panel_from_the_rollup_equals_the_raw_reference(world):  # noqa: F811
    care_rollup.rebuild()
    panel = PANELS["care"]
    team_a, _ = world["teams"]
    checked = 0
    for who, params in [("admin", {}), ("manager", {}), ("admin", {"channel": "web"}),
                        ("admin", {"lane": ["issue", "praise"]}), ("admin", {"team": str(team_a.pk)}),
                        ("admin", {"connector": str(world["connectors"]["c1"].pk)}),
                        ("admin", {"from": "2026-09-01", "to": "2026-11-20"})]:
        f = _filters(world[who], **params)
        answer = panel.query(f)
        assert answer["approximate"] is True
        assert insight_raw.first_difference(answer, insight_raw.reference(panel)(f)) == "", (who, params)
        checked += answer["first_response"]["count"]
    assert checked > 50


def test_a_rollup_cut_in_another_time_zone_is_not_read(world, settings):  # noqa: F811
    care_rollup.rebuild()
    settings.CXM_REPORT_TIME_ZONE = "Asia/Kolkata"
    assert not care_rollup.kept()
    f = _filters(world["admin"])
    answer = PANELS["care"].query(f)
    assert answer["approximate"] is False  # read from the cases: exact
    raw = insight_raw.reference(PANELS["care"])(f)
    assert answer["first_response"] == raw["first_response"] and answer["resolution"] == raw["resolution"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_transactions_counting_one_teams_day_do_not_wait_on_each_other(make_connector):
    """Two routing transactions opening cases for one team on one day both count in that day's
    summed rows: each writes its own shard, so the second does not wait for the first's commit."""
    import threading

    from django.db import OperationalError, transaction

    from responses.models import Team

    connector = make_connector("webhook", slug="shards", name="shards")
    team = Team.objects.create(name="Shards", slug="shards")
    care_rollup.rebuild()
    now = timezone.now()

    def open_case(thread: str) -> Case:
        conversation = Conversation.objects.create(connector=connector, channel="web", external_id=thread,
                                                   started_at=now, last_message_at=now)
        return Case.objects.create(conversation=conversation, connector=connector, channel="web", team=team,
                                   lane="issue", opened_at=now)

    def txid_shard() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current() %% %s", [care_rollup.SHARDS])
            return cursor.fetchone()[0]

    holding, release, first = threading.Event(), threading.Event(), {}

    def first_router():
        try:
            with transaction.atomic():
                first["shard"] = txid_shard()
                open_case("first")
                holding.set()
                release.wait(20)
        finally:
            connection.close()

    worker = threading.Thread(target=first_router)
    worker.start()
    try:
        assert holding.wait(20)
        for _ in range(care_rollup.SHARDS + 1):  # a transaction id in another shard than the first's
            with transaction.atomic():
                if txid_shard() != first["shard"]:
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = '3s'")
                    try:
                        open_case("second")
                    except OperationalError as exc:  # lock timeout: waited on the first's rows
                        pytest.fail(f"the second router waited on the first's rollup rows: {exc}")
                    break
    finally:
        release.set()
        worker.join(20)
    assert Case.objects.count() == 2
    rows = _rows()
    assert rows == _recount()
    assert sum(n for key, n in rows.items() if key[0] == "d" and not key[2] and key[7] == "cases") == 2
    assert CareRollup.objects.filter(grain="d", detail=False, metric="cases").count() == 2  # two shards
