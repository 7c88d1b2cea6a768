"""The care panel's rollup: case and reply counts and histograms of response and resolution times
per reporting day and month, kept by PostgreSQL triggers in the transaction that changes a case or
a reply.

Why triggers: cases are opened, answered, resolved, reopened, reassigned and moved between teams
by routing, replies, rules, the API and the admin, through save(), queryset.update() and bulk
writes. A trigger sees every one of them, atomically, without a hook in each (the layer contract
stays: responses writes cases and knows nothing of insight; insight installs the triggers).

Rows (insight.models.CareRollup): per (grain "d"/"m", bucket, detail, team, connector, channel,
lane) the metrics
- "cases" per assignee (user 0: none) and "replies" (not automatic) per author (0: none): exact;
- "met" and "late": answered within or after the case's SLA minutes: exact (cases not answered
  yet whose SLA ran out depend on the moment asked; the panel counts those from raw cases);
- "frs" and "rs": how many seconds after opening the first response and the resolution came,
  counted in log-spaced bins (`bounds`): counts exact, medians and p90s approximate (within one
  bin: at most RATIO - 1 = 5% off, and under 1 s for times below a second).

Times are wall clock. A team with a business calendar needs business time, case by case, so the
care panel computes the times of such teams from raw cases (insight.panels.care).

PostgreSQL only; on SQLite the panel reads raw cases. `rebuild()` recomputes every row from the
raw tables (set-based: the day rows in one pass over cases and replies, the other slots summed
from them, into a new table swapped in) and records the reporting time zone the buckets were cut in;
`learning.rollups.rebuild` sends `rollups_rebuilt`, so `manage.py rebuild_rollups` rebuilds this too.
"""

from __future__ import annotations

import math
from datetime import date, datetime

from django.db import connection, transaction
from django.dispatch import receiver

from learning import rollups

RATIO = 1.05  # each bin is 5% wider than the one before
# Every case a team opens in a day counts in that day's and month's summed rows. Written by one
# row per key, those rows were held by each routing transaction until it committed, so routing
# workers took turns (bench/e2e.py at 50 msgs/s: 4 routing threads at 23% of a core, a case 20 s
# late, each INSERT waiting on another's rollup row). A transaction writes its counts into one of
# SHARDS copies of each key, by its transaction id; readers sum over them (they sum anyway), and a
# rebuild folds them back into shard 0.
SHARDS = 8
GRAINS = ("d", "m")
METRICS = ("cases", "replies", "met", "late", "frs", "rs")


def bounds(bin_: int) -> tuple[float, float]:
    """The seconds a bin holds: [low, high). Bin 0 holds everything under a second (and any
    negative span, from a clock that went back); bin k >= 1 holds [RATIO**(k-1), RATIO**k)."""
    if bin_ <= 0:
        return 0.0, 1.0
    return RATIO ** (bin_ - 1), RATIO ** bin_


def percentile(histogram: dict[int, int], fraction: float) -> float | None:
    """percentile_cont over a histogram (bin -> count): the value at rank fraction * (n - 1),
    linear between neighbours, where the values of a bin are taken as spread evenly (on the log
    scale) across it. The exact value lies in the bins of the two neighbouring ranks."""
    total = sum(histogram.values())
    if not total:
        return None
    ordered = sorted((b, n) for b, n in histogram.items() if n > 0)

    def at(rank: int) -> float:
        seen = 0
        for b, n in ordered:
            if rank < seen + n:
                low, high = bounds(b)
                position = (rank - seen + 0.5) / n
                return low + (high - low) * position if b <= 0 else low * (high / low) ** position
            seen += n
        return bounds(ordered[-1][0])[1]

    rank = fraction * (total - 1)
    below, above = at(math.floor(rank)), at(math.ceil(rank))
    return below + (above - below) * (rank - math.floor(rank))


def tolerance(exact: float | None) -> float:
    """How far an approximate percentile may be from the exact `exact` seconds (one bin, plus the
    panel's rounding to 0.1 s)."""
    return max(1.0, abs(exact or 0.0) * (RATIO - 1)) + 0.1


# --- SQL: keys, triggers, rebuild -------------------------------------------------------------
# The slots a case (or its replies) counts in: 2 grains x (the summed row, the detail row).
_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION insight_care_bin(seconds double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN seconds < 1 THEN 0 ELSE 1 + floor(ln(seconds) / ln({RATIO}))::integer END
$$;

CREATE OR REPLACE FUNCTION insight_care_slots(p_connector bigint, p_channel text, p_lane text,
                                              p_opened timestamptz, p_tz text)
RETURNS TABLE (grain text, bucket timestamptz, detail boolean, connector_id bigint, channel text, lane text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT g.grain, date_trunc(g.unit, p_opened AT TIME ZONE p_tz) AT TIME ZONE p_tz, l.detail, l.connector_id,
         l.channel, l.lane
  FROM (VALUES ('d', 'day'), ('m', 'month')) AS g(grain, unit)
  CROSS JOIN (VALUES (false, 0, '', ''),
                     (true, coalesce(p_connector, 0), coalesce(p_channel, ''), coalesce(p_lane, '')))
       AS l(detail, connector_id, channel, lane)
$$;

CREATE OR REPLACE FUNCTION insight_care_metrics(p_assignee bigint, p_opened timestamptz, p_first timestamptz,
                                                p_resolved timestamptz, p_sla integer)
RETURNS TABLE (metric text, user_id bigint, bin integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 'cases', coalesce(p_assignee, 0), 0
  UNION ALL
  SELECT 'frs', 0, insight_care_bin(date_part('epoch', p_first - p_opened)) WHERE p_first IS NOT NULL
  UNION ALL
  SELECT 'rs', 0, insight_care_bin(date_part('epoch', p_resolved - p_opened)) WHERE p_resolved IS NOT NULL
  UNION ALL
  SELECT CASE WHEN p_first <= p_opened + p_sla * interval '1 minute' THEN 'met' ELSE 'late' END, 0, 0
  WHERE p_sla IS NOT NULL AND p_first IS NOT NULL
$$;
"""  # noqa: S608 - constants only

def _upsert(rows: str, sharded: bool = True) -> str:
    shard = (f", (txid_current() % {SHARDS})::smallint", ", shard") if sharded else ("", "")
    return f"""
INSERT INTO insight_carerollup AS r (grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id,
                                     bin{shard[1]}, n)
SELECT grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id, bin{shard[0]}, sum(d)
FROM ({rows}) AS x
GROUP BY grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id, bin
HAVING sum(d) <> 0
-- one order for every writer: two transactions touching the same rows never deadlock
ORDER BY grain, detail, team_id, bucket, connector_id, channel, lane, metric, user_id, bin
ON CONFLICT (grain, detail, team_id, bucket, connector_id, channel, lane, metric, user_id, bin{shard[1]})
DO UPDATE SET n = r.n + excluded.n
"""  # noqa: S608 - constants only


# A case's own rows, and its replies' rows when the case moves to other slots (team, connector,
# channel, lane, opening day): o and nw are the old and new row (NULL on insert and delete).
_CASE_ROWS = """
  SELECT o.team_id, s.*, m.*, -1 AS d
  FROM insight_care_slots(o.connector_id, o.channel, o.lane, o.opened_at, tz) AS s,
       insight_care_metrics(o.assignee_id, o.opened_at, o.first_response_at, o.resolved_at, o.sla_minutes) AS m
  WHERE TG_OP <> 'INSERT'
  UNION ALL
  SELECT nw.team_id, s.*, m.*, 1
  FROM insight_care_slots(nw.connector_id, nw.channel, nw.lane, nw.opened_at, tz) AS s,
       insight_care_metrics(nw.assignee_id, nw.opened_at, nw.first_response_at, nw.resolved_at, nw.sla_minutes) AS m
  WHERE TG_OP <> 'DELETE'
  UNION ALL
  SELECT o.team_id, s.*, 'replies', a.author, 0, -a.n
  FROM insight_care_slots(o.connector_id, o.channel, o.lane, o.opened_at, tz) AS s,
       (SELECT coalesce(author_id, 0) AS author, count(*) AS n FROM responses_reply
        WHERE case_id = o.id AND NOT automatic GROUP BY 1) AS a
  WHERE TG_OP = 'UPDATE' AND moved
  UNION ALL
  SELECT nw.team_id, s.*, 'replies', a.author, 0, a.n
  FROM insight_care_slots(nw.connector_id, nw.channel, nw.lane, nw.opened_at, tz) AS s,
       (SELECT coalesce(author_id, 0) AS author, count(*) AS n FROM responses_reply
        WHERE case_id = nw.id AND NOT automatic GROUP BY 1) AS a
  WHERE TG_OP = 'UPDATE' AND moved
"""

_REPLY_ROWS = """
  SELECT c.team_id, s.*, 'replies' AS metric, coalesce(o.author_id, 0) AS user_id, 0 AS bin, -1 AS d
  FROM responses_case AS c, insight_care_slots(c.connector_id, c.channel, c.lane, c.opened_at, tz) AS s
  WHERE TG_OP <> 'INSERT' AND NOT o.automatic AND c.id = o.case_id
  UNION ALL
  SELECT c.team_id, s.*, 'replies', coalesce(nw.author_id, 0), 0, 1
  FROM responses_case AS c, insight_care_slots(c.connector_id, c.channel, c.lane, c.opened_at, tz) AS s
  WHERE TG_OP <> 'DELETE' AND NOT nw.automatic AND c.id = nw.case_id
"""

_CASE_KEY = ("team_id", "connector_id", "channel", "lane", "opened_at")
_CASE_FIELDS = (*_CASE_KEY, "assignee_id", "first_response_at", "resolved_at", "sla_minutes")

def triggers_sql(sharded: bool = True) -> str:
    """The functions and triggers (`sharded`: writing shards, as since insight 0005)."""
    return f"""
{_FUNCTIONS}

CREATE OR REPLACE FUNCTION insight_care_case_changed() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  tz text;
  o responses_case;
  nw responses_case;
  moved boolean := false;
BEGIN
  SELECT time_zone INTO tz FROM insight_carerollupstate WHERE id = 1;
  IF tz IS NULL THEN RETURN NULL; END IF;  -- no rollup kept
  IF TG_OP <> 'INSERT' THEN o := OLD; END IF;
  IF TG_OP <> 'DELETE' THEN nw := NEW; END IF;
  IF TG_OP = 'UPDATE' THEN
    moved := ({" OR ".join(f"o.{f} IS DISTINCT FROM nw.{f}" for f in _CASE_KEY)});
  END IF;
  {_upsert(_CASE_ROWS, sharded)};
  RETURN NULL;
END
$body$;

CREATE OR REPLACE FUNCTION insight_care_reply_changed() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  tz text;
  o responses_reply;
  nw responses_reply;
BEGIN
  SELECT time_zone INTO tz FROM insight_carerollupstate WHERE id = 1;
  IF tz IS NULL THEN RETURN NULL; END IF;
  IF TG_OP <> 'INSERT' THEN o := OLD; END IF;
  IF TG_OP <> 'DELETE' THEN nw := NEW; END IF;
  {_upsert(_REPLY_ROWS, sharded)};
  RETURN NULL;
END
$body$;

DROP TRIGGER IF EXISTS insight_care_case_written ON responses_case;
CREATE TRIGGER insight_care_case_written AFTER INSERT OR DELETE ON responses_case
  FOR EACH ROW EXECUTE FUNCTION insight_care_case_changed();
DROP TRIGGER IF EXISTS insight_care_case_updated ON responses_case;
CREATE TRIGGER insight_care_case_updated AFTER UPDATE ON responses_case
  FOR EACH ROW WHEN ({" OR ".join(f"OLD.{f} IS DISTINCT FROM NEW.{f}" for f in _CASE_FIELDS)})
  EXECUTE FUNCTION insight_care_case_changed();
DROP TRIGGER IF EXISTS insight_care_reply_written ON responses_reply;
CREATE TRIGGER insight_care_reply_written AFTER INSERT OR DELETE ON responses_reply
  FOR EACH ROW EXECUTE FUNCTION insight_care_reply_changed();
DROP TRIGGER IF EXISTS insight_care_reply_updated ON responses_reply;
CREATE TRIGGER insight_care_reply_updated AFTER UPDATE ON responses_reply
  FOR EACH ROW WHEN (OLD.case_id IS DISTINCT FROM NEW.case_id OR OLD.author_id IS DISTINCT FROM NEW.author_id
                     OR OLD.automatic IS DISTINCT FROM NEW.automatic)
  EXECUTE FUNCTION insight_care_reply_changed();

-- The panel counts unanswered cases whose SLA ran out from the raw table: few rows, this index.
CREATE INDEX IF NOT EXISTS insight_care_unanswered_idx ON responses_case (opened_at)
  WHERE first_response_at IS NULL AND sla_minutes IS NOT NULL;
"""  # noqa: S608 - constants only


TRIGGERS = triggers_sql()

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS insight_care_case_written ON responses_case;
DROP TRIGGER IF EXISTS insight_care_case_updated ON responses_case;
DROP TRIGGER IF EXISTS insight_care_reply_written ON responses_reply;
DROP TRIGGER IF EXISTS insight_care_reply_updated ON responses_reply;
DROP FUNCTION IF EXISTS insight_care_case_changed();
DROP FUNCTION IF EXISTS insight_care_reply_changed();
DROP FUNCTION IF EXISTS insight_care_metrics(bigint, timestamptz, timestamptz, timestamptz, integer);
DROP FUNCTION IF EXISTS insight_care_slots(bigint, text, text, timestamptz, text);
DROP FUNCTION IF EXISTS insight_care_bin(double precision);
DROP INDEX IF EXISTS insight_care_unanswered_idx;
"""

# The rebuild from the raw tables. First the detail rows per reporting day, each case read once:
# the metrics insight_care_metrics gives, written out as a VALUES list (a set-returning SQL
# function with a UNION is not inlined: one function call per case), and the replies per case
# and author. The day rows summed over connector, channel and lane, and both kinds of month rows,
# are sums of those (insight_care_slots' four slots), not four passes over the cases.
_REBUILD_DAYS = """
CREATE TEMPORARY TABLE care_rebuild ON COMMIT DROP AS
SELECT team_id, bucket, connector_id, channel, lane, metric, user_id, bin, sum(n) AS n
FROM (
  SELECT c.team_id, date_trunc('day', c.opened_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS bucket,
         coalesce(c.connector_id, 0) AS connector_id, coalesce(c.channel, '') AS channel,
         coalesce(c.lane, '') AS lane, m.metric, m.user_id, m.bin, 1 AS n
  FROM responses_case AS c
  CROSS JOIN LATERAL (VALUES
    ('cases', coalesce(c.assignee_id, 0), 0),
    (CASE WHEN c.first_response_at IS NOT NULL THEN 'frs' END, 0,
     insight_care_bin(date_part('epoch', c.first_response_at - c.opened_at))),
    (CASE WHEN c.resolved_at IS NOT NULL THEN 'rs' END, 0,
     insight_care_bin(date_part('epoch', c.resolved_at - c.opened_at))),
    (CASE WHEN c.sla_minutes IS NOT NULL AND c.first_response_at IS NOT NULL THEN
       CASE WHEN c.first_response_at <= c.opened_at + c.sla_minutes * interval '1 minute' THEN 'met' ELSE 'late' END
     END, 0, 0)
  ) AS m(metric, user_id, bin)
  WHERE m.metric IS NOT NULL
  UNION ALL
  SELECT c.team_id, date_trunc('day', c.opened_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s,
         coalesce(c.connector_id, 0), coalesce(c.channel, ''), coalesce(c.lane, ''), 'replies', a.author, 0, a.n
  FROM (SELECT case_id, coalesce(author_id, 0) AS author, count(*) AS n FROM responses_reply
        WHERE NOT automatic GROUP BY 1, 2) AS a
  JOIN responses_case AS c ON c.id = a.case_id
) AS x
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""

_REBUILD = """
INSERT INTO {table} (grain, bucket, detail, team_id, connector_id, channel, lane, metric, user_id, bin, n)
SELECT 'd', bucket, true, team_id, connector_id, channel, lane, metric, user_id, bin, n FROM care_rebuild
UNION ALL
SELECT 'd', bucket, false, team_id, 0, '', '', metric, user_id, bin, sum(n)
  FROM care_rebuild GROUP BY bucket, team_id, metric, user_id, bin
UNION ALL
SELECT 'm', month, true, team_id, connector_id, channel, lane, metric, user_id, bin, sum(n)
  FROM (SELECT *, date_trunc('month', bucket AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS month FROM care_rebuild) AS d
  GROUP BY month, team_id, connector_id, channel, lane, metric, user_id, bin
UNION ALL
SELECT 'm', month, false, team_id, 0, '', '', metric, user_id, bin, sum(n)
  FROM (SELECT *, date_trunc('month', bucket AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS month FROM care_rebuild) AS d
  GROUP BY month, team_id, metric, user_id, bin
"""


def kept() -> bool:
    """Whether the rollup holds the care figures for the current reporting time zone."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT time_zone FROM insight_carerollupstate WHERE id = 1")
        row = cursor.fetchone()
    return bool(row) and row[0] == rollups.reporting_tz().key


def rebuild() -> dict:
    """Recompute every care rollup row from cases and replies, in the current reporting time zone
    (PostgreSQL; nothing to do elsewhere)."""
    if connection.vendor != "postgresql":
        return {"care_rows": 0}
    tz = rollups.reporting_tz().key
    with transaction.atomic(), connection.cursor() as cursor:
        # Writers wait while the rows are recounted, so no change falls between the count and the swap.
        cursor.execute("LOCK TABLE responses_case, responses_reply IN SHARE MODE")
        cursor.execute("SET LOCAL work_mem = '256MB'")  # the sums stay in memory
        cursor.execute("DROP TABLE IF EXISTS pg_temp.care_rebuild")  # a second rebuild in one transaction
        cursor.execute(_REBUILD_DAYS, {"tz": tz})
        # A new table swapped in (learning.rollups.replace_table): its indexes built once, after the rows.
        rows = rollups.replace_table(cursor, "insight_carerollup", _REBUILD, {"tz": tz})
        cursor.execute("DROP TABLE pg_temp.care_rebuild")
        cursor.execute("DELETE FROM insight_carerollupstate")
        cursor.execute("INSERT INTO insight_carerollupstate (id, time_zone, built_at) VALUES (1, %s, now())", [tz])
        return {"care_rows": rows}


@receiver(rollups.rollups_rebuilt, dispatch_uid="insight.care_rollup")
def _with_learning(sender, **kwargs) -> dict:
    """`manage.py rebuild_rollups` (learning.rollups.rebuild) rebuilds this rollup too, in its transaction."""
    return rebuild()


def months_inside(start: date, end: date) -> tuple[date, date] | None:
    """The whole months of the reporting calendar inside the days [start, end], as (the first
    such month's first day, the first day after the last such month), or None."""
    first = start if start.day == 1 else _next_month(start)
    after = _next_day(end) if _next_day(end).day == 1 else end.replace(day=1)
    return (first, after) if first < after else None


def _next_day(day: date) -> date:
    return date.fromordinal(day.toordinal() + 1)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def slots(start: date, end: date) -> list[tuple[str, datetime, datetime]]:
    """(grain, from, until) instants covering the days [start, end]: month rows for the whole
    months inside, day rows for the days around them."""
    start_at, end_at = rollups.day_start(start), rollups.day_start(_next_day(end))
    months = months_inside(start, end)
    if months is None:
        return [("d", start_at, end_at)]
    m0, m1 = rollups.day_start(months[0]), rollups.day_start(months[1])
    out = [("m", m0, m1)]
    if start_at < m0:
        out.append(("d", start_at, m0))
    if m1 < end_at:
        out.append(("d", m1, end_at))
    return out
