"""Outbound webhooks for admins (the admin area): subscriptions (the secret is in the answer to
the POST that made it, never again), their delivery log, switching on and off, and replay."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from responses import access, outbound
from responses.api import base
from responses.models import WebhookDelivery, WebhookSubscription


class SubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookSubscription
        fields = ["id", "name", "url", "events", "enabled", "consecutive_failures", "disabled_reason", "created_at"]
        read_only_fields = ["id", "enabled", "consecutive_failures", "disabled_reason", "created_at"]


class SubscriptionInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    url = serializers.CharField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=sorted(outbound.EVENT_TYPES)),
                                   min_length=1, max_length=len(outbound.EVENT_TYPES))


class SubscriptionMadeSerializer(SubscriptionSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once: keep it to verify signatures.")

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]


class SubscriptionChangeSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    name = serializers.CharField(max_length=120, required=False)
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(child=serializers.ChoiceField(choices=sorted(outbound.EVENT_TYPES)),
                                   min_length=1, max_length=len(outbound.EVENT_TYPES), required=False)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "subscription", "event_id", "event_type", "status", "attempts", "response_status",
                  "last_error", "next_attempt_at", "created_at", "delivered_at"]
        read_only_fields = fields


class SubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                          viewsets.GenericViewSet):
    scope_area = "admin"
    serializer_class = SubscriptionSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return WebhookSubscription.objects.none()
        access.require_admin(self.request.user)
        return WebhookSubscription.objects.all()

    def get_object(self):
        return outbound.get_subscription(self.request.user, self.kwargs["pk"])

    @extend_schema(request=SubscriptionInSerializer, responses={201: SubscriptionMadeSerializer})
    def create(self, request):
        data = SubscriptionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row, secret = outbound.subscribe(request.user, v["name"], v["url"], v["events"])
        return Response({**SubscriptionSerializer(row).data, "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(request=SubscriptionChangeSerializer, responses=SubscriptionSerializer)
    def partial_update(self, request, pk=None):
        """Rename, change the URL or the event types; switch on (failures forgiven, what is due
        is sent) or off. The secret never changes."""
        row = self.get_object()
        data = SubscriptionChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if {"name", "url", "events"} & set(v):
            row = outbound.update_subscription(request.user, row.pk, name=v.get("name"), url=v.get("url"),
                                               event_types=v.get("events"))
        if "enabled" in v:
            row = outbound.set_enabled(request.user, row.pk, v["enabled"])
        return Response(SubscriptionSerializer(row).data)

    def perform_destroy(self, instance) -> None:
        outbound.unsubscribe(self.request.user, instance.pk)


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("subscription", OpenApiTypes.INT),
    OpenApiParameter("status", OpenApiTypes.STR, enum=list(WebhookDelivery.Status.values))]))
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The delivery log, newest first."""

    scope_area = "admin"
    serializer_class = DeliverySerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return WebhookDelivery.objects.none()
        access.require_admin(self.request.user)
        rows = WebhookDelivery.objects.all()
        if self.action == "list":
            params = self.request.query_params
            subscription = base.query_int(params, "subscription")
            if subscription is not None:
                rows = rows.filter(subscription_id=subscription)
            if params.get("status"):
                if params["status"] not in WebhookDelivery.Status.values:
                    raise outbound.InvalidRequest(f"status is {', '.join(WebhookDelivery.Status.values)}")
                rows = rows.filter(status=params["status"])
        return rows

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "delivery")

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Send it again now (same event id: receivers that saw it can tell)."""
        self.get_object()
        return Response(DeliverySerializer(outbound.replay(request.user, pk)).data)
