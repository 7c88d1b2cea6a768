"""GET/PATCH /api/v1/customers/<id>/profile: a customer's living profile (tier, time zone, preferred
channel, custom attributes, last known location), read and set through listening.attributes, the
same checks as the console and the CSV import. A customer the token's user cannot see is a 404."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from listening.attributes import set_profile
from listening.connectors import presentation
from listening.location import customer_zone, time_zone_origin
from listening.models import Customer
from responses import access
from responses.api import base
from responses.api.messages import visible_customers


def profile_dict(customer: Customer) -> dict[str, Any]:
    zone = customer_zone(customer)
    located = customer.location_lat is not None
    return {
        "customer": customer.pk,
        "tier": customer.tier,
        "time_zone": zone.key if zone else "",
        "time_zone_origin": time_zone_origin(customer, lambda channel: presentation(channel).label),
        "time_zone_set": customer.time_zone,
        "channel_time_zone": customer.channel_time_zone,
        "preferred_channel": customer.preferred_channel,
        "learned_channel": customer.learned_channel,
        "channel_override": customer.channel_override,
        "attributes": customer.attributes,
        "location": {"lat": customer.location_lat, "lon": customer.location_lon,
                     "at": customer.location_at.isoformat() if customer.location_at else None,
                     "source": customer.location_source} if located else None,
    }


class ProfileInSerializer(serializers.Serializer):
    tier = serializers.CharField(required=False, allow_blank=True, help_text="standard, premium, business, ...")
    time_zone = serializers.CharField(required=False, allow_blank=True, help_text="An IANA name: Europe/Berlin.")
    preferred_channel = serializers.CharField(required=False, allow_blank=True,
                                              help_text="Overrides the learned channel; blank: learn again.")
    attributes = serializers.DictField(required=False, help_text="key: value (null clears); checked by type.")


class ProfileSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    tier = serializers.CharField()
    time_zone = serializers.CharField()
    time_zone_origin = serializers.CharField(help_text="Where the zone comes from, in words: set by a person, "
                                             "the channel, or the phone number's prefix (in that order).")
    time_zone_set = serializers.CharField(help_text="The zone a person or a system set (wins); blank: none.")
    channel_time_zone = serializers.CharField(help_text="The zone the customer's channel last told; blank: none.")
    preferred_channel = serializers.CharField()
    learned_channel = serializers.CharField()
    channel_override = serializers.CharField()
    attributes = serializers.DictField()
    location = serializers.DictField(allow_null=True)


class CustomerProfile(APIView):
    scope_area = "customers"

    def _customer(self, request, pk) -> Customer:
        return base.by_id(visible_customers(request.user), pk, "customer")

    @extend_schema(operation_id="customer_profile_read", responses=ProfileSerializer)
    def get(self, request, pk):
        """The customer's profile."""
        return Response(profile_dict(self._customer(request, pk)))

    @extend_schema(operation_id="customer_profile_update", request=ProfileInSerializer, responses=ProfileSerializer)
    def patch(self, request, pk):
        """Set the tier, time zone, preferred channel or attributes (all or nothing: a bad value is
        a 400 naming it and nothing is saved)."""
        access.require_reply(request.user)
        customer = self._customer(request, pk)
        return Response(profile_dict(set_profile(customer, request.data, source="api")))
