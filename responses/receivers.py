"""Signal receivers: classified messages are routed; a provider's delivery reports update the
replies they are about; a user who logs out or leaves a team stops receiving that team's events
at once (their consoles are told to re-check)."""

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver

from learning.signals import messages_classified
from listening.signals import connector_failing, delivery_status, signals_ingested
from responses.models import AgentProfile, Team
from responses.replies import apply_delivery_status
from responses.signal_tasks import evaluate_signal_messages, evaluate_signals


@receiver(messages_classified, dispatch_uid="responses.route_classified")
def route_classified(sender, message_ids, **kwargs):
    from responses.tasks import route_messages

    route_messages.delay(list(message_ids))


@receiver(signals_ingested, dispatch_uid="responses.signals_ingested")
def evaluate_ingested_signals(sender, signal_ids, **kwargs):
    """Rules over signals (responses.signal_rules) see every stored signal, in a worker."""
    evaluate_signals.delay(list(signal_ids))


@receiver(messages_classified, dispatch_uid="responses.signal_rules_classified")
def signal_rules_classified(sender, message_ids, **kwargs):
    """"A signal, then an unhappy message": only when such a rule is on."""
    from responses.models import SignalRule

    if SignalRule.objects.filter(enabled=True, kind=SignalRule.Kind.FOLLOWED_BY_NEGATIVE).exists():
        evaluate_signal_messages.delay(list(message_ids))


@receiver(delivery_status, dispatch_uid="responses.delivery_status")
def delivery_reported(sender, connector_id, statuses, **kwargs):
    for status in statuses:
        apply_delivery_status(connector_id, status)


@receiver(connector_failing, dispatch_uid="responses.connector_failing")
def connector_started_failing(sender, connector_id, reason, **kwargs):
    """Every admin's console hears at once that a source stopped working."""
    from django.contrib.auth import get_user_model

    from listening.models import Connector
    from responses import access, event_types, events

    connector = Connector.objects.filter(pk=connector_id).values("id", "name", "kind").first()
    if connector is None:
        return
    admins = get_user_model().objects.filter(access.admin_q(), is_active=True).values_list("pk", flat=True)
    with transaction.atomic():
        for user_id in admins.distinct():
            events.emit(event_types.CONNECTOR_FAILING, {"connector": connector, "reason": reason[:300]},
                        user_id=user_id)


@receiver(user_logged_out, dispatch_uid="responses.logged_out")
def logged_out(sender, request, user, **kwargs):
    if user is not None:
        _recheck(user.pk)


@receiver(m2m_changed, sender=Team.members.through, dispatch_uid="responses.members_changed")
def members_changed(sender, instance, action, pk_set, reverse, **kwargs):
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if reverse:  # user.cxm_teams.remove(team): instance is the user
        user_ids = [instance.pk]
    elif pk_set:
        user_ids = list(pk_set)
    else:  # team.members.clear(): we no longer know who; every console re-checks
        user_ids = None
    for user_id in user_ids or []:
        _recheck(user_id)
    if user_ids is None:
        _recheck_all()


@receiver(post_save, sender=AgentProfile, dispatch_uid="responses.profile_saved")
def profile_saved(sender, instance, **kwargs):
    _recheck(instance.user_id)


@receiver(post_save, sender="auth.User", dispatch_uid="responses.user_saved")
def user_saved(sender, instance, created, **kwargs):
    if not created:
        _recheck(instance.pk)  # deactivated, or made (or no longer) a superuser


def _recheck(user_id: int) -> None:
    from responses.events import send_to_group, user_group

    transaction.on_commit(lambda: send_to_group(user_group(user_id), {"type": "console.recheck"}))


def _recheck_all() -> None:
    from responses.events import send_to_group

    transaction.on_commit(lambda: send_to_group("cxm.consoles", {"type": "console.recheck"}))
