"""Dashboards' panels and spike alerts (the insight area): the same filters, the same numbers and
the same access as the console's dashboards (insight.dashboards parses and bounds the filters and
applies the user's teams)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from insight import alerts as alert_actions, dashboards as insight
from insight.api.serializers import AlertSerializer
from insight.models import Alert
from insight.panels import PANELS
from insight.views.dashboards import _period, find_panel
from responses import access
from responses.api import base
from responses.exceptions import InvalidRequest, NotAllowed

PANEL_FILTERS = [
    OpenApiParameter("from", OpenApiTypes.DATE), OpenApiParameter("to", OpenApiTypes.DATE),
    OpenApiParameter("granularity", OpenApiTypes.STR, enum=list(insight.GRANULARITIES)),
    OpenApiParameter("compare", OpenApiTypes.STR, enum=["0", "1"]),
    OpenApiParameter("term", OpenApiTypes.INT),
    *[OpenApiParameter(name, OpenApiTypes.STR, many=True) for name in insight.LIST_PARAMS],
]


def require_viewer(user) -> None:
    if not insight.can_view(user):
        raise NotAllowed("dashboards and alerts are for supervisors, brand managers and admins")


class PanelList(APIView):
    scope_area = "insight"

    @extend_schema(operation_id="insight_panels_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        """The panels' names; each is at panels/<name>."""
        require_viewer(request.user)
        return Response({"panels": sorted(PANELS)})


class PanelDetail(APIView):
    scope_area = "insight"

    @extend_schema(parameters=PANEL_FILTERS, responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str):
        """One panel's numbers for the filters, as the dashboard's JSON."""
        require_viewer(request.user)
        declared = find_panel(name)
        filters = insight.parse_filters(request.query_params, request.user)
        return Response({"panel": name, "period": _period(filters), **declared.query(filters)})


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "insight"
    serializer_class = AlertSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        require_viewer(self.request.user)
        alerts = Alert.objects.filter(team_id__in=access.team_ids(self.request.user))
        wanted = self.request.query_params.get("status") if self.action == "list" else None
        if wanted:
            if wanted not in Alert.Status.values:
                raise InvalidRequest(f"status is {' or '.join(Alert.Status.values)}")
            alerts = alerts.filter(status=wanted)
        return alerts

    @extend_schema(parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=list(Alert.Status.values))])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "alert")

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return Response(AlertSerializer(alert_actions.acknowledge(self.get_object(), request.user)).data)
