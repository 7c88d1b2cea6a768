"""/api/v1/proactive-messages: care writes first, over the API, through responses.proactive (the
console's checks, in the same order, with the same words): the customer opted out (409), the
frequency cap (429 with Retry-After), a listen-only source or a closed window without an approved
template (400), an unknown template or wrong values (400). A refusal stores nothing.

POST needs an `Idempotency-Key`: the same key and body answer what the first request answered and
send once (the key also makes the message itself idempotent, so a retry after a lost answer sends
nothing twice); the same key with another body is a 422. Lists are keyset-paginated, newest first,
and hold the messages on cases of the token's teams. Scopes: `cases:write` to send, `cases:read`
to read.
"""

from __future__ import annotations

import hashlib

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from listening.attributes import known_channels
from responses import access, proactive
from responses.api import base
from responses.api.cases import IDEMPOTENCY
from responses.api.serializers import UserSerializer
from responses.exceptions import InvalidRequest
from responses.models import ProactiveMessage, Reply

MAX_VALUES = 10


class ProactiveInSerializer(serializers.Serializer):
    customer = serializers.IntegerField(min_value=1, help_text="The customer's id (GET /customers).")
    channel = serializers.CharField(required=False, allow_blank=True, max_length=40, help_text=(
        "A channel key (whatsapp, sms, email, ...). Default: the customer's preferred channel, else where they "
        "last wrote, among the sources your teams serve."))
    case = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text=(
        "Send on this case of the customer's. Default: their active case on the channel, else a new proactive "
        "case in the Care queue."))
    template = serializers.CharField(required=False, allow_blank=True, max_length=600, help_text=(
        "An approved template of the source (its name or name:language). Required when the channel's window "
        "is closed (WhatsApp: 24 hours since the customer's last message)."))
    values = serializers.ListField(child=serializers.CharField(max_length=200, allow_blank=True), required=False,
                                   max_length=MAX_VALUES, help_text="The template's values, {{1}} first.")
    text = serializers.CharField(required=False, allow_blank=True, max_length=40_000,
                                 help_text="Free text, where the window is open; ignored with a template.")
    key = serializers.CharField(required=False, max_length=64, help_text=(
        "The Idempotency-Key, for clients that cannot send headers; the header wins and must match."))

    def validate(self, data):
        if not (data.get("template") or "").strip() and not (data.get("text") or "").strip():
            raise serializers.ValidationError("write a text, or choose an approved template")
        channel = (data.get("channel") or "").strip()
        if channel and channel not in known_channels():
            raise serializers.ValidationError({"channel": f"unknown channel {channel[:40]!r}"})
        return data


class TemplateUsedSerializer(serializers.Serializer):
    name = serializers.CharField()
    language = serializers.CharField()
    values = serializers.ListField(child=serializers.CharField())


class ProactiveMessageSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField(help_text="pending, delivered or failed: the delivery's state.")
    error = serializers.SerializerMethodField(help_text="Why the delivery failed; empty otherwise.")
    text = serializers.SerializerMethodField(help_text="What the customer reads (a template filled in).")
    template = serializers.SerializerMethodField()
    sent_by = UserSerializer(read_only=True, allow_null=True)
    delivered_at = serializers.SerializerMethodField()
    reply = serializers.IntegerField(source="reply_id", read_only=True)

    class Meta:
        model = ProactiveMessage
        fields = ["id", "key", "customer", "case", "reply", "connector", "channel", "status", "error", "text",
                  "template", "sent_by", "rule", "created_at", "delivered_at"]
        read_only_fields = fields

    def get_status(self, message: ProactiveMessage) -> str:
        return message.reply.status

    def get_error(self, message: ProactiveMessage) -> str:
        return message.reply.last_error if message.reply.status == Reply.Status.FAILED else ""

    def get_text(self, message: ProactiveMessage) -> str:
        return message.reply.text

    @extend_schema_field(TemplateUsedSerializer(allow_null=True))
    def get_template(self, message: ProactiveMessage) -> dict | None:
        if not message.template_name:
            return None
        return {"name": message.template_name, "language": message.template_language,
                "values": list(message.template_values or [])}

    def get_delivered_at(self, message: ProactiveMessage) -> str | None:
        return message.reply.delivered_at.isoformat() if message.reply.delivered_at else None


PROACTIVE_FILTERS = [
    OpenApiParameter("customer", OpenApiTypes.INT),
    OpenApiParameter("case", OpenApiTypes.INT),
    OpenApiParameter("status", OpenApiTypes.STR, enum=list(Reply.Status.values)),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME),
]


@extend_schema_view(list=extend_schema(parameters=PROACTIVE_FILTERS))
class ProactiveMessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "cases"
    serializer_class = ProactiveMessageSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return ProactiveMessage.objects.none()
        rows = (ProactiveMessage.objects.filter(case__team_id__in=access.team_ids(self.request.user))
                .select_related("reply", "sent_by"))
        if self.action != "list":
            return rows
        params = self.request.query_params
        for name in ("customer", "case"):
            number = base.query_int(params, name)
            if number is not None:
                rows = rows.filter(**{f"{name}_id": number})
        wanted = params.get("status")
        if wanted:
            if wanted not in Reply.Status.values:
                raise InvalidRequest(f"status must be one of {', '.join(Reply.Status.values)}")
            rows = rows.filter(reply__status=wanted)
        after = base.query_time(params, "created_after")
        if after is not None:
            rows = rows.filter(created_at__gte=after)
        return rows

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "proactive message")

    @extend_schema(request=ProactiveInSerializer, responses={201: ProactiveMessageSerializer},
                   parameters=[IDEMPOTENCY])
    def create(self, request):
        """Send a first message to a customer (see the rules above). Idempotency-Key is required."""
        key = base.idempotency_key(request)
        body_key = request.data.get("key") if isinstance(request.data, dict) else None
        if body_key is not None:
            if not isinstance(body_key, str) or (key and body_key != key):
                raise InvalidRequest("key must be text, and the Idempotency-Key header's when both are sent")
            key = key or base.idempotency_key_value(body_key)
        if not key:
            raise InvalidRequest("send an Idempotency-Key header (or a key in the body): the same key sends the "
                                 "message once")
        print_ = base.fingerprint(request, request.data)
        earlier = base.replayed(request, key, print_)
        if earlier is not None:
            return earlier
        given = ProactiveInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        template = (data.get("template") or "").strip()
        message = proactive.send_to_customer(
            request.user, data["customer"], channel=(data.get("channel") or "").strip(), case_id=data.get("case"),
            text=data.get("text") or "", template=template, values=data.get("values", []) if template else None,
            key=action_key(request.user.pk, key))
        message = ProactiveMessage.objects.select_related("reply", "sent_by").get(pk=message.pk)
        response = Response(ProactiveMessageSerializer(message).data, status=status.HTTP_201_CREATED)
        return base.remember(request, key, print_, response)


def action_key(user_id: int, key: str) -> str:
    """The message's own key: per user (an API client's key never meets a console's or another
    user's), within proactive's 64 characters (a long key is hashed)."""
    plain = f"api-{user_id}-{key}"
    return plain if len(plain) <= 64 else f"api-{user_id}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
