"""POST /api/v1/signals: an integration (a billing system, a device cloud) sends signals about
customers. Admin tokens with the customers:write scope only: a signal can open a case for any
team. The schema is the webhook's (README, "Signals"), all or nothing: one refused signal is a
400 naming it and nothing of the request is stored; ids already stored count as duplicates."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from listening.exceptions import PayloadInvalid
from listening.signal_actions import ingest_signals, parse_signal
from listening.signal_types import SIGNAL_TYPES
from responses import access

MAX_SIGNALS = 1000
SOURCE = "api"


class SignalInSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=sorted(SIGNAL_TYPES))
    occurred_at = serializers.DateTimeField(required=False, help_text="ISO 8601; default: now.")
    customer = serializers.DictField(required=False, help_text="email, phone, or channel with contact_id.")
    device_id = serializers.CharField(max_length=120, required=False)
    payload = serializers.DictField(required=False, help_text="The fields the signal's type declares.")


class SignalBatchSerializer(serializers.Serializer):
    signals = SignalInSerializer(many=True)


class SignalRejectedSerializer(serializers.Serializer):
    id = serializers.CharField()
    reason = serializers.CharField()


class SignalResultSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = SignalRejectedSerializer(many=True)


class SignalCreate(APIView):
    scope_area = "customers"

    @extend_schema(operation_id="signals_create", request=SignalBatchSerializer,
                   responses={201: SignalResultSerializer})
    def post(self, request):
        """Store signals (device errors, failed payments, orders, NPS answers...) about customers."""
        access.require_admin(request.user)
        items = request.data.get("signals") if isinstance(request.data, dict) else None
        if not isinstance(items, list) or not items or len(items) > MAX_SIGNALS:
            raise PayloadInvalid(f"the body is {{\"signals\": [...]}} with 1 to {MAX_SIGNALS} signals")
        parsed = [parse_signal(item, f"signals[{i}]") for i, item in enumerate(items)]
        result = ingest_signals(SOURCE, parsed, strict=True)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)
