"""Spike alerts: a team's channel, connector or term whose last hour stands far above its own past.

Method (`detect_spikes`, run every 5 minutes by beat's `learning.detect_spikes`, and by `poll_loop`
in the zero-setup trial):

* **Series.** Per team, over the connectors it owns (the default team also watches connectors that
  no team owns, as routing does): all of the team's messages, each channel, each connector and
  each term (brand, product, competitor, topic) with messages in the window. A channel series
  holding exactly the messages of one connector series (one connector on that channel) is the same
  spike: only the connector's is reported; the team's whole series is dropped when one channel or
  connector is all of it.
* **Window.** Inbound messages sent in the last 60 minutes with a current, successful
  classification, counted exactly from the raw tables; their ids (at most 500) stay on the alert.
* **Baseline.** The series' hourly counts over the 168 whole hours (7 days) before the hour the
  window starts in, from the hourly rollups (`learning.rollups`); an hour without rows counts 0,
  from the team's first hour with messages on: hours before it were not listened to, so they are
  not zeros (a new install's 3 days of history are 72 hours, not 72 hours and 96 zeros).
* **Enough history.** A series raises nothing until the baseline holds at least
  `AlertSettings.min_history_hours` (default 72: 3 days) whole hours after its first hour with
  messages (that hour may hold only its last minute, so it does not count). A
  new install, or a term first mentioned today, has no usual level to stand above: its first
  busy hour would read "against a usual 0 (z = 21)".
* **Volume spike.** expected = median of the 168 hours; scale = max(1.4826 x MAD, sqrt(expected),
  1); z = (observed - expected) / scale. 1.4826 x MAD (median absolute deviation) is a standard
  deviation that a few wild hours in the baseline barely move; sqrt(expected) is the Poisson noise
  floor, so a series with a flat baseline does not alarm on a handful of extra messages; 1 keeps
  an empty baseline from dividing by zero.
* **Negative-share spike.** p0 = (baseline negatives + 1) / (baseline messages + 3), a small prior
  so that an empty baseline reads "about a third", not 0; z = (neg - n p0) / sqrt(n p0 (1 - p0)),
  the binomial z of the window's n messages of which neg are negative. The share must also have
  risen by at least 10 points over p0: on a busy series a trivial change is "significant".
* **Alert** when z >= the sensitivity's threshold (low 5, medium 4, high 3) and the window holds
  at least `AlertSettings.min_messages` messages. `AlertSettings.enabled` off: no detection.
* **One surge, one alert.** While the team's whole series spikes, a channel, connector or term
  spike is left out when the rest of the team's messages rose nearly as much (its rise, observed
  over the baseline median, is under 1.5 times the rest's) or are nearly as negative (under 10
  points more): the team's alert says it once, and the parts that rose far more (a topic that
  drives the surge) are still reported. A surge one channel or connector drives is reported as
  that part and not also as the team's.
* **One alert per spike.** While an alert of the same (team, kind, dimension, key) has a window
  that ended within the last 2 hours, a new crossing updates it (latest window end, the peak's
  score and numbers, the newest messages) instead of raising another. An acknowledged alert is
  updated too and stays acknowledged: a spike that goes on is not news to whoever acknowledged it.
* **Notification**, once per alert: a console event (`alert.raised`) to every supervisor and brand
  manager of the team and every admin, an email to `AlertSettings.email_to` and a JSON POST to
  `AlertSettings.webhook_url` signed `X-CXM-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
  (5 s timeout; private and loopback addresses refused unless CXM_ALLOW_PRIVATE_URLS). Failures
  are stored in `Alert.notify_error`, never raised. During quiet hours (`quiet_start` to
  `quiet_end` in the reporting time zone, may wrap midnight) alerts are recorded and listed but
  not pushed; one still going when the quiet hours end is pushed then.

Alerts belong to teams and reach consoles, both of which `responses` owns, so this module reads
`responses` models and emits console events (as the Alert.team foreign key already does).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from statistics import median

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from insight.models import Alert, AlertSettings
from learning import rollups
from learning.models import Classification, Rollup, Sentiment, Term
from listening.crypto import CredentialsUnreadable
from listening.exceptions import ProviderError
from listening.models import Connector, Direction

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=60)
BASELINE_HOURS = 168
SAME_SPIKE = timedelta(hours=2)  # an alert whose window ended this recently is the same spike
THRESHOLDS = {AlertSettings.Sensitivity.LOW: 5.0, AlertSettings.Sensitivity.MEDIUM: 4.0,
              AlertSettings.Sensitivity.HIGH: 3.0}
MAD_TO_SD = 1.4826
PRIOR_NEGATIVE, PRIOR_TOTAL = 1, 3
MIN_SHARE_RISE = 0.10
# While the team's whole volume spikes, a part of it is news only if it rose this much more.
EXPLAINED_FACTOR = 1.5
TEAM_KEY = "all"
MAX_MESSAGE_IDS = 500
WEBHOOK_TIMEOUT = 5.0
EVENT_TYPE = "alert.raised"
_ADDRESS_SPLIT = re.compile(r"[\s,;]+")


# --- The method, as pure functions ---------------------------------------------------------------
@dataclass(frozen=True)
class VolumeTest:
    observed: int
    expected: float
    mad: float
    scale: float
    z: float


@dataclass(frozen=True)
class NegativeTest:
    negatives: int
    total: int
    share: float
    baseline_negatives: int
    baseline_total: int
    p0: float
    z: float


def volume_test(hourly: list[int], observed: int) -> VolumeTest:
    """Robust z of `observed` messages in an hour against the hourly baseline counts."""
    expected = float(median(hourly)) if hourly else 0.0
    mad = float(median(abs(n - expected) for n in hourly)) if hourly else 0.0
    scale = max(MAD_TO_SD * mad, math.sqrt(expected), 1.0)
    return VolumeTest(observed, expected, mad, scale, (observed - expected) / scale)


def negative_test(baseline_negatives: int, baseline_total: int, negatives: int, total: int) -> NegativeTest:
    """Binomial z of the window's negatives against the baseline's (smoothed) negative share."""
    p0 = (baseline_negatives + PRIOR_NEGATIVE) / (baseline_total + PRIOR_TOTAL)
    share = negatives / total if total else 0.0
    z = (negatives - total * p0) / math.sqrt(total * p0 * (1 - p0)) if total else 0.0
    return NegativeTest(negatives, total, share, baseline_negatives, baseline_total, p0, z)


def is_quiet(alert_settings: AlertSettings, now: datetime) -> bool:
    """Whether `now` falls in the quiet hours (reporting time zone; may wrap midnight)."""
    start, end = alert_settings.quiet_start, alert_settings.quiet_end
    if start is None or end is None or start == end:
        return False
    local: time = now.astimezone(rollups.reporting_tz()).time()
    return start <= local < end if start < end else (local >= start or local < end)


# --- Gathering a team's series -------------------------------------------------------------------
@dataclass
class Series:
    dimension: str
    key: str
    hourly: list[int] = field(default_factory=lambda: [0] * BASELINE_HOURS)
    baseline_negatives: int = 0
    total: int = 0
    negatives: int = 0
    ids: list[int] = field(default_factory=list)
    negative_ids: list[int] = field(default_factory=list)
    history_hours: int = 0  # baseline hours after its first hour with messages

    def signature(self) -> tuple:
        return (self.total, self.negatives, tuple(self.hourly), self.baseline_negatives, tuple(self.ids))


@dataclass(frozen=True)
class Finding:
    kind: str
    dimension: str
    key: str
    label: str
    observed: float
    expected: float
    score: float
    detail: dict
    message_ids: list[int]


def gather(connector_ids: set[int], now: datetime) -> list[Series]:
    """The series of these connectors with messages in the window ending `now`, with baselines."""
    start = now - WINDOW
    found: dict[tuple[str, str], Series] = {}

    def series(dimension: str, key) -> Series:
        return found.setdefault((dimension, str(key)), Series(dimension, str(key)))

    window = (Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__connector_id__in=connector_ids, message__sent_at__gte=start, message__sent_at__lt=now,
    ).order_by("-message__sent_at", "-message_id")
        .values_list("message_id", "message__channel", "message__connector_id", "sentiment", "topics"))
    for message_id, channel, connector_id, sentiment, topics in window.iterator(chunk_size=2000):
        negative = sentiment == Sentiment.NEGATIVE
        for s in (series("team", TEAM_KEY), series("channel", channel), series("connector", connector_id),
                  *(series("term", t) for t in rollups.term_ids(topics))):
            s.total += 1
            s.negatives += negative
            if len(s.ids) < MAX_MESSAGE_IDS:
                s.ids.append(message_id)
            if negative and len(s.negative_ids) < MAX_MESSAGE_IDS:
                s.negative_ids.append(message_id)
    if found:
        _add_baselines(found, connector_ids, rollups.hour_bucket(start))
        _from_first_listened_hour(found.values())
    return list(found.values())


def _first_busy_hour(hourly: list[int]) -> int:
    return next((i for i, n in enumerate(hourly) if n), len(hourly))


def _from_first_listened_hour(found) -> None:
    """Each series' history, and its baseline cut to the hours since the team's first message
    (every series' messages are the team's, so the earliest of them is the team's)."""
    first = min(_first_busy_hour(s.hourly) for s in found)
    for s in found:
        # Whole hours after the first busy one: that hour may hold only its last minute.
        s.history_hours = max(len(s.hourly) - _first_busy_hour(s.hourly) - 1, 0)
        s.hourly = s.hourly[first:]


def _add_baselines(found: dict[tuple[str, str], Series], connector_ids: set[int], end_hour: datetime) -> None:
    first_hour = end_hour - timedelta(hours=BASELINE_HOURS)
    rows = (Rollup.objects.filter(grain=rollups.HOUR, dim="sentiment", connector_id__in=connector_ids,
                                  bucket__gte=first_hour, bucket__lt=end_hour)
            .values_list("term_id", "channel", "connector_id", "bucket", "value").annotate(n=Sum("count")))
    for term_id, channel, connector_id, bucket, value, n in rows:
        keys = ([("term", str(term_id))] if term_id
                else [("team", TEAM_KEY), ("channel", channel), ("connector", str(connector_id))])
        hour = int((bucket - first_hour) / timedelta(hours=1))
        for key in keys:
            s = found.get(key)
            if s is None or not 0 <= hour < BASELINE_HOURS:
                continue
            s.hourly[hour] += n
            if value == Sentiment.NEGATIVE:
                s.baseline_negatives += n


def _without_duplicates(found: list[Series]) -> list[Series]:
    """One series per spike: a channel holding exactly one connector's messages is that connector,
    and the team's whole series is dropped when one channel or connector is all of it."""
    connectors = {s.signature() for s in found if s.dimension == "connector"}
    channels = {s.signature() for s in found if s.dimension == "channel"}
    return [s for s in found
            if not (s.dimension == "channel" and s.signature() in connectors)
            and not (s.dimension == "team" and s.signature() in connectors | channels)]


def _rise(hourly: list[int], total: int) -> float:
    return total / max(float(median(hourly)), 1.0)


def _explained(kind: str, s: Series, team: Series) -> bool:
    """Whether a part's spike is the team's broad surge seen through it: the rest of the team's
    messages rose nearly as much (within EXPLAINED_FACTOR), or are nearly as negative (within
    MIN_SHARE_RISE). Then the team's own alert says it once."""
    rest_hourly = [t - p for t, p in zip(team.hourly, s.hourly, strict=True)]
    rest_total, rest_negatives = team.total - s.total, team.negatives - s.negatives
    if rest_total <= 0:
        return False
    if kind == Alert.Kind.VOLUME:
        return _rise(rest_hourly, rest_total) * EXPLAINED_FACTOR >= _rise(s.hourly, s.total)
    return s.negatives / max(s.total, 1) - rest_negatives / rest_total < MIN_SHARE_RISE


# --- Testing the series ------------------------------------------------------------------------
def evaluate(s: Series, threshold: float, min_messages: int,
             min_history_hours: int = 0) -> list[tuple[str, float, float, float, dict, list]]:
    """(kind, observed, expected, z, detail, message ids) for each test the series fails."""
    if s.total < max(min_messages, 1) or s.history_hours < min_history_hours:
        return []
    out = []
    volume = volume_test(s.hourly, s.total)
    if volume.z >= threshold:
        out.append((Alert.Kind.VOLUME, float(s.total), volume.expected, volume.z,
                    {"method": "volume", "observed": s.total, "expected": volume.expected, "mad": volume.mad,
                     "noise_floor": math.sqrt(volume.expected), "scale": volume.scale, "z": volume.z,
                     "baseline_hours": len(s.hourly), "history_hours": s.history_hours,
                     "baseline_total": sum(s.hourly)}, s.ids))
    negative = negative_test(s.baseline_negatives, sum(s.hourly), s.negatives, s.total)
    if negative.z >= threshold and negative.share - negative.p0 >= MIN_SHARE_RISE:
        out.append((Alert.Kind.NEGATIVE, negative.share, negative.p0, negative.z,
                    {"method": "negative", "negatives": negative.negatives, "total": negative.total,
                     "share": negative.share, "baseline_negatives": negative.baseline_negatives,
                     "baseline_total": negative.baseline_total, "p0": negative.p0, "z": negative.z,
                     "baseline_hours": len(s.hourly), "history_hours": s.history_hours}, s.negative_ids))
    return out


def _labels(found: list[Series]) -> dict[tuple[str, str], str]:
    labels = {(s.dimension, s.key): f"Channel {s.key}" for s in found if s.dimension == "channel"}
    labels[("team", TEAM_KEY)] = "All messages"
    connector_ids = [int(s.key) for s in found if s.dimension == "connector"]
    for pk, name in Connector.objects.filter(pk__in=connector_ids).values_list("pk", "name"):
        labels[("connector", str(pk))] = f"Connector {name}"
    term_ids = [int(s.key) for s in found if s.dimension == "term"]
    for term in Term.objects.filter(pk__in=term_ids):
        labels[("term", str(term.pk))] = f"{term.get_kind_display()} {term.name}"
    return labels


def findings(connector_ids: set[int], now: datetime, threshold: float, min_messages: int,
             min_history_hours: int = 0) -> list[Finding]:
    """Every spike in these connectors' series, for the window ending `now`."""
    found = gather(connector_ids, now)
    reported = _without_duplicates(found)
    # The team's whole series, when it is reported itself (not the same as one of its parts).
    team = next((s for s in reported if s.dimension == "team"), None)
    team_kinds = ({kind for kind, *_ in evaluate(team, threshold, min_messages, min_history_hours)}
                  if team else set())
    labels = _labels(found)
    kept: list[tuple[Series, tuple]] = []
    for s in reported:
        if labels.get((s.dimension, s.key)) is None:  # a deleted connector or term
            continue
        for result in evaluate(s, threshold, min_messages, min_history_hours):
            if s is not team and result[0] in team_kinds and _explained(result[0], s, team):
                continue
            kept.append((s, result))
    # A surge one channel or connector drives is reported as that part, not also as the team's.
    driven = {result[0] for s, result in kept if s.dimension in ("channel", "connector")}
    out = []
    for s, (kind, observed, expected, z, detail, ids) in kept:
        if s is team and kind in driven:
            continue
        detail = {**detail, "threshold": threshold, "window_start": (now - WINDOW).isoformat(),
                  "window_end": now.isoformat()}
        out.append(Finding(kind, s.dimension, s.key, labels[(s.dimension, s.key)], observed, expected, z, detail,
                           list(ids)))
    return out


# --- Recording and notifying -------------------------------------------------------------------
def detect_spikes(now: datetime | None = None) -> list[int]:
    """Look for spikes in every team's series; record them and notify. Returns the ids of the alerts
    created or updated."""
    alert_settings = AlertSettings.current()
    if not alert_settings.enabled:
        return []
    now = now or timezone.now()
    threshold = THRESHOLDS.get(alert_settings.sensitivity, THRESHOLDS[AlertSettings.Sensitivity.MEDIUM])
    from responses import teams

    touched = []
    for team_id, connector_ids in teams.team_connectors().items():
        if not connector_ids:
            continue
        found = findings(connector_ids, now, threshold, alert_settings.min_messages,
                         alert_settings.min_history_hours)
        if found:
            with transaction.atomic():
                # One detection run records at a time: two would both create the same spike.
                AlertSettings.objects.select_for_update().filter(pk=alert_settings.pk).first()
                touched += [record(team_id, finding, now).pk for finding in found]
    if touched and not is_quiet(alert_settings, now):
        notify_pending(touched, alert_settings)
    return touched


def record(team_id: int, finding: Finding, now: datetime) -> Alert:
    """Create the alert, or update the same spike's recent alert."""
    window_start = now - WINDOW
    alert = (Alert.objects.select_for_update()
             .filter(team_id=team_id, kind=finding.kind, dimension=finding.dimension, key=finding.key,
                     window_end__gte=now - SAME_SPIKE).order_by("-window_end").first())
    if alert is None:
        return Alert.objects.create(
            team_id=team_id, kind=finding.kind, dimension=finding.dimension, key=finding.key, label=finding.label,
            window_start=window_start, window_end=now, observed=finding.observed, expected=finding.expected,
            score=finding.score, detail={**finding.detail, "detections": 1}, message_ids=finding.message_ids,
            created_at=now,
        )
    detections = int(alert.detail.get("detections", 1)) + 1
    if finding.score >= alert.score:
        alert.observed, alert.expected, alert.score = finding.observed, finding.expected, finding.score
        alert.detail = finding.detail
    alert.detail = {**alert.detail, "detections": detections, "last_seen": now.isoformat()}
    alert.window_end = max(alert.window_end, now)
    alert.label = finding.label
    alert.message_ids = list(dict.fromkeys([*finding.message_ids, *alert.message_ids]))[:MAX_MESSAGE_IDS]
    alert.save()
    return alert


def notify_pending(alert_ids: list[int], alert_settings: AlertSettings) -> None:
    """Push each open alert not pushed yet, exactly once: the run that stamps notified_at sends."""
    for alert in Alert.objects.filter(pk__in=alert_ids, notified_at__isnull=True,
                                      status=Alert.Status.OPEN).select_related("team"):
        if not Alert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(notified_at=timezone.now()):
            continue
        errors = [error for error in (_push_to_consoles(alert), _email(alert, alert_settings),
                                      _webhook(alert, alert_settings)) if error]
        if errors:
            Alert.objects.filter(pk=alert.pk).update(notify_error="; ".join(errors)[:2000])


def alert_path(alert: Alert) -> str:
    return reverse("console:alert", kwargs={"alert_id": alert.pk})


def describe(alert: Alert, when: str = "in the last hour") -> str:
    """The alert's numbers in words: "142 messages in the last hour against a usual 12 (z = 9.3)"."""
    detail = alert.detail or {}
    if alert.kind == Alert.Kind.NEGATIVE:
        return (f"{detail.get('negatives', 0)} of {detail.get('total', 0)} messages negative ({alert.observed:.0%}) "
                f"{when} against a usual {alert.expected:.0%} (z = {alert.score:.1f})")
    if not alert.expected:  # "against a usual 0" reads as a broken figure: say it is new
        return f"{alert.observed:g} messages {when}, where an hour usually has none (z = {alert.score:.1f})"
    return f"{alert.observed:g} messages {when} against a usual {alert.expected:g} (z = {alert.score:.1f})"


def summary(alert: Alert) -> dict:
    """What a console, an email and a webhook are told about an alert."""
    return {
        "id": alert.pk, "kind": alert.kind, "kind_label": alert.get_kind_display(), "dimension": alert.dimension,
        "key": alert.key, "label": alert.label, "team": {"id": alert.team_id, "name": alert.team.name},
        "window_start": alert.window_start.isoformat(), "window_end": alert.window_end.isoformat(),
        "observed": alert.observed, "expected": alert.expected, "score": round(alert.score, 3),
        "summary": describe(alert), "url": alert_path(alert), "status": alert.status,
    }


def recipients(team_id: int) -> list[int]:
    """Who is told live: the team's supervisors and brand managers, and every admin."""
    from responses.access import admin_q
    from responses.models import Role

    return list(get_user_model().objects.filter(is_active=True).filter(
        admin_q() | Q(cxm_profile__role__in=[Role.SUPERVISOR, Role.BRAND_MANAGER], cxm_teams__id=team_id)
    ).order_by("pk").values_list("pk", flat=True).distinct())


def _push_to_consoles(alert: Alert) -> str:
    from responses import event_types
    from responses.events import emit

    try:
        with transaction.atomic():
            payload = {"alert": summary(alert)}
            for user_id in recipients(alert.team_id):
                emit(event_types.ALERT_RAISED, payload, user_id=user_id)
    except Exception as exc:  # the alert stays on the alerts page either way
        log.exception("could not push alert %s to consoles", alert.pk)
        return f"console: {type(exc).__name__}: {exc}"
    return ""


def email_addresses(text: str) -> list[str]:
    return [part for part in _ADDRESS_SPLIT.split(text or "") if part]


def public_url(path: str) -> str:
    base = getattr(settings, "CXM_PUBLIC_URL", "")
    return f"{base.rstrip('/')}{path}" if base else path


def _email(alert: Alert, alert_settings: AlertSettings) -> str:
    addresses = email_addresses(alert_settings.email_to)
    if not addresses:
        return ""
    subject = f"[CXM] {alert.get_kind_display()}: {alert.label} ({alert.team.name})"
    text = (f"{alert.get_kind_display()} on {alert.label}, team {alert.team.name}.\n\n{describe(alert)}.\n\n"
            f"Window: {alert.window_start:%Y-%m-%d %H:%M} to {alert.window_end:%H:%M} UTC.\n"
            f"Open it: {public_url(alert_path(alert))}\n")
    try:
        send_mail(subject, text, None, addresses)
    except Exception as exc:  # SMTP refused, unreachable: recorded on the alert
        log.warning("alert %s: email failed: %r", alert.pk, exc)
        return f"email: {type(exc).__name__}: {exc}"
    return ""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(alert: Alert, alert_settings: AlertSettings) -> str:
    from listening import http

    if not alert_settings.webhook_url:
        return ""
    data = {"type": EVENT_TYPE, "alert": {**summary(alert), "url": public_url(alert_path(alert)),
                                          "detail": alert.detail}}
    body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    try:
        secret = alert_settings.webhook_secret
    except CredentialsUnreadable:  # never send unsigned what the receiver expects signed
        return "webhook: its secret cannot be decrypted with the configured keys; enter it again"
    if secret:
        headers["X-CXM-Signature"] = sign(secret, body)
    try:
        http.request("POST", alert_settings.webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
    except ProviderError as exc:
        return f"webhook: {exc}"
    except Exception as exc:  # never let a receiver's failure escape the detection run
        log.exception("alert %s: webhook failed", alert.pk)
        return f"webhook: {type(exc).__name__}"
    return ""


# --- Actions for the console -------------------------------------------------------------------
def acknowledge(alert: Alert, user) -> Alert:
    """Mark the alert acknowledged (once: a second acknowledgement keeps the first's who and when)."""
    Alert.objects.filter(pk=alert.pk, status=Alert.Status.OPEN).update(
        status=Alert.Status.ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=timezone.now())
    alert.refresh_from_db()
    return alert
