"""GET /api/v1/search: the console's search (responses.search) for a token: the same parsing of
the text (400 with a reason for a query too long or only of left-out words), the same filters and
the same scope (the token's user's teams; an admin sees every team), the same JSON as the
console's search page asked for JSON. One page, newest matches first; counts stop at 200 ("200+")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from responses import search
from responses.api import base

PARAMETERS = [
    OpenApiParameter("q", OpenApiTypes.STR, description='Words (all must match), "a phrase", -leave out, '
                     "this OR that; the last word may be the start of a word. At most 500 characters."),
    OpenApiParameter("channel", OpenApiTypes.STR),
    OpenApiParameter("lane", OpenApiTypes.STR, enum=list(search.LANE_CHOICES)),
    OpenApiParameter("status", OpenApiTypes.STR, enum=list(search.STATUS_CHOICES)),
    OpenApiParameter("assignee", OpenApiTypes.STR, description="me, none or a user id"),
    OpenApiParameter("tag", OpenApiTypes.STR),
    OpenApiParameter("language", OpenApiTypes.STR, description="a language code: en, pt-BR"),
    OpenApiParameter("since", OpenApiTypes.DATE),
    OpenApiParameter("until", OpenApiTypes.DATE),
    OpenApiParameter("days", OpenApiTypes.INT, description="the last N days"),
    OpenApiParameter("limit", OpenApiTypes.INT, description="conversations on the page, 1 to 100 (20)"),
]


class HitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["message", "note"])
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    author = serializers.CharField()
    snippet = serializers.CharField(help_text="Plain text around the first match.")
    matches = serializers.ListField(child=serializers.CharField(), help_text="The matched words in the snippet.")


class GroupSerializer(serializers.Serializer):
    conversation = serializers.IntegerField()
    case = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    customer = serializers.CharField()
    channel = serializers.CharField()
    at = serializers.DateTimeField()
    hits = HitSerializer(many=True)


class CustomerHitSerializer(serializers.Serializer):
    name = serializers.CharField()
    detail = serializers.CharField()
    case = serializers.IntegerField(allow_null=True)


class SearchSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Matching messages (or cases, without words); 201 means 200+.")
    count_label = serializers.CharField()
    more = serializers.BooleanField()
    groups = GroupSerializer(many=True)
    customers = CustomerHitSerializer(many=True)


class Search(APIView):
    scope_area = "messages"

    @extend_schema(operation_id="search", parameters=PARAMETERS, responses=SearchSerializer)
    def get(self, request):
        """Conversations whose messages or notes match, newest first, with snippets; and the
        customers whose name, handle or email match."""
        params = request.query_params
        query = search.parse_query(params.get("q", ""))
        filters = search.parse_filters({name: params.get(name, "") for name in search.FILTER_NAMES})
        limit = base.query_int(params, "limit") or 20
        if limit > 100:
            raise search.InvalidRequest("limit must be from 1 to 100")
        return Response(search.as_json(search.search(request.user, query, filters, limit=limit)))
