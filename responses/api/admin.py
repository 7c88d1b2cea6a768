"""For admins (the admin area): connectors' health with pause and resume (never a secret: no
config, no credentials); teams, queues, routing rules and intents, read and written (POST makes,
PATCH changes what it names, DELETE removes) through responses.organisation's actions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cxm.client_address import client_ip
from learning.models import Intent
from listening import audit
from listening.models import Connector
from responses import access, organisation
from responses.api import base
from responses.api.serializers import (
    ConnectorSerializer,
    IntentSerializer,
    QueueSerializer,
    RuleSerializer,
    TeamSerializer,
)
from responses.models import Queue, RoutingRule, Team


class AdminReadOnly(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "admin"
    pagination_class = base.IdCursor
    model = None

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        access.require_admin(self.request.user)
        return self.model.objects.all()

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], self.model._meta.verbose_name)


class ConnectorViewSet(AdminReadOnly):
    model = Connector
    serializer_class = ConnectorSerializer

    def _set_enabled(self, request, enabled: bool) -> Response:
        connector = self.get_object()
        if connector.enabled != enabled:
            with audit.changing(connector.pk, request.user, "resumed" if enabled else "paused",
                                ip=client_ip(request._request)) as connector:
                connector.enabled = enabled
        return Response(ConnectorSerializer(connector).data)

    @extend_schema(request=None, responses=ConnectorSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._set_enabled(request, False)

    @extend_schema(request=None, responses=ConnectorSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._set_enabled(request, True)


# Ids past a 64-bit integer are no row, and the database would refuse to look them up.
ID_MAX = 2**63 - 1


class TeamInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.CharField(max_length=60, required=False, help_text="Made from the name when absent.")
    members = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=ID_MAX), max_length=500,
                                    required=False,
                                    help_text="User ids (each with a console role); replaces the members.")
    connectors = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=ID_MAX), max_length=500,
                                       required=False,
                                       help_text="Connector ids whose conversations the team owns; replaces them.")


class QueueInSerializer(serializers.Serializer):
    team = serializers.IntegerField(min_value=1, max_value=ID_MAX,
                                    help_text="Set when the queue is made; it cannot move.")
    name = serializers.CharField(max_length=120)
    slug = serializers.CharField(max_length=60, required=False, help_text="Made from the name when absent.")
    lane = serializers.ChoiceField(choices=organisation.QUEUE_LANES, required=False, allow_blank=True,
                                   help_text="The lane this queue is the team's default for; blank: none.")
    sla_minutes = serializers.IntegerField(min_value=1, max_value=organisation.MAX_SLA_MINUTES, allow_null=True,
                                           required=False, help_text="Time to first response; null: no SLA.")
    auto_assign = serializers.BooleanField(required=False)
    position = serializers.IntegerField(min_value=0, max_value=32767, required=False)


class RuleInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    position = serializers.IntegerField(min_value=0, max_value=2_147_483_647, required=False)
    enabled = serializers.BooleanField(required=False)
    conditions = serializers.ListField(child=serializers.DictField(), max_length=20, required=False,
                                       help_text='All must hold: [{"field": "sentiment", "op": "in", '
                                                 '"value": ["negative"]}, ...]')
    actions = serializers.DictField(required=False, help_text='e.g. {"queue": "care", "priority_boost": 0.2}')
    stop = serializers.BooleanField(required=False)


class IntentInSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=60, help_text="Fixed once made: classifications name the intent by it.")
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    lane = serializers.ChoiceField(choices=organisation.INTENT_LANES, required=False, allow_blank=True)
    priority_weight = serializers.FloatField(min_value=-1.0, max_value=1.0, required=False)
    enabled = serializers.BooleanField(required=False)
    counts_on_dashboards = serializers.BooleanField(required=False)
    examples = serializers.ListField(child=serializers.CharField(max_length=500), max_length=200, required=False,
                                     help_text="Example messages, added to the intent's (the head is refitted).")


class AdminWritable(AdminReadOnly):
    """POST, PATCH and DELETE through the actions named by `make`, `change` and `remove`."""

    in_serializer: type[serializers.Serializer]
    make = change = remove = None

    def create(self, request):
        data = self.in_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = type(self).make(request.user, **data.validated_data)
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        data = self.in_serializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        row = type(self).change(request.user, self.get_object().pk, **data.validated_data)
        return Response(self.get_serializer(row).data)

    def destroy(self, request, pk=None):
        type(self).remove(request.user, self.get_object().pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


def writable(in_serializer, out_serializer):
    """The schema of the three writes (drf-spectacular cannot read it off the actions)."""
    return extend_schema_view(
        create=extend_schema(request=in_serializer, responses={201: out_serializer}),
        partial_update=extend_schema(request=in_serializer, responses=out_serializer),
        destroy=extend_schema(responses={204: None}),
    )


@writable(TeamInSerializer, TeamSerializer)
class TeamViewSet(AdminWritable):
    model = Team
    serializer_class = TeamSerializer
    in_serializer = TeamInSerializer
    make, change, remove = organisation.create_team, organisation.update_team, organisation.delete_team

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        return super().get_queryset().prefetch_related("members", "connectors")


@writable(QueueInSerializer, QueueSerializer)
class QueueViewSet(AdminWritable):
    model = Queue
    serializer_class = QueueSerializer
    in_serializer = QueueInSerializer
    make, change, remove = organisation.create_queue, organisation.update_queue, organisation.delete_queue


@writable(RuleInSerializer, RuleSerializer)
class RuleViewSet(AdminWritable):
    model = RoutingRule
    serializer_class = RuleSerializer
    in_serializer = RuleInSerializer
    make, change, remove = organisation.create_rule, organisation.update_rule, organisation.delete_rule


@writable(IntentInSerializer, IntentSerializer)
class IntentViewSet(AdminWritable):
    model = Intent
    serializer_class = IntentSerializer
    in_serializer = IntentInSerializer
    make, change, remove = organisation.create_intent, organisation.update_intent, organisation.delete_intent
