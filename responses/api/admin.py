"""For admins (the admin area): connectors' health with pause and resume (never a secret: no
config, no credentials), and the teams, queues, routing rules and intents as they stand."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cxm.client_address import client_ip
from learning.models import Intent
from listening import audit
from listening.models import Connector
from responses import access
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


class TeamViewSet(AdminReadOnly):
    model = Team
    serializer_class = TeamSerializer

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        return super().get_queryset().prefetch_related("members", "connectors")


class QueueViewSet(AdminReadOnly):
    model = Queue
    serializer_class = QueueSerializer


class RuleViewSet(AdminReadOnly):
    model = RoutingRule
    serializer_class = RuleSerializer


class IntentViewSet(AdminReadOnly):
    model = Intent
    serializer_class = IntentSerializer
