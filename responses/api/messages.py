"""Messages and conversations (the messages area), their classifications and agents' corrections
(the learning area), customers and contacts (the customers area). A token reads the messages of
the connectors its user may read (responses.access.connector_ids), as the dashboards' drill-down
does; anything else does not exist for it (404)."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from learning.models import Classification, Correction
from listening.actions import merge_customers
from listening.models import Contact, Conversation, Customer, Direction, Message
from responses import access, cases as case_actions
from responses.api import base
from responses.api.serializers import (
    ClassificationSerializer,
    ContactSerializer,
    ConversationSerializer,
    CorrectionInSerializer,
    CorrectionSerializer,
    CustomerSerializer,
    MergeSerializer,
    MessageSerializer,
)
from responses.exceptions import CaseNotFound, InvalidRequest

MESSAGE_FILTERS = [
    OpenApiParameter("conversation", OpenApiTypes.INT),
    OpenApiParameter("connector", OpenApiTypes.INT),
    OpenApiParameter("channel", OpenApiTypes.STR),
    OpenApiParameter("direction", OpenApiTypes.STR, enum=Direction.values),
    OpenApiParameter("sentiment", OpenApiTypes.STR, enum=["negative", "neutral", "positive"]),
    OpenApiParameter("lane", OpenApiTypes.STR),
    OpenApiParameter("sent_after", OpenApiTypes.DATETIME),
    OpenApiParameter("sent_before", OpenApiTypes.DATETIME),
]


MESSAGE_COLUMNS = ("id", "connector_id", "conversation_id", "channel", "direction", "author_id", "text", "url",
                   "sent_at", "received_at")
CLASSIFICATION_COLUMNS = ("id", "message_id", "status", "sentiment", "sentiment_scores", "emotion", "emotion_scores",
                          "intent", "intent_scores", "language", "lane", "priority", "topics", "model_name",
                          "model_version", "created_at")
_moment = serializers.DateTimeField().to_representation  # DRF's own format ("...Z" for UTC)


def message_rows(messages: list[dict]) -> list[dict]:
    """MessageSerializer's output for rows of MESSAGE_COLUMNS, with one query for their current
    classifications (tests/api/test_resources.py checks the two agree)."""
    current = {c["message_id"]: c for c in Classification.objects.filter(
        message_id__in=[m["id"] for m in messages], is_current=True).values(*CLASSIFICATION_COLUMNS)}
    out = []
    for m in messages:
        found = current.get(m["id"])
        if found is not None:
            found = {("message" if k == "message_id" else k): v for k, v in found.items()}
            found.update(priority=float(found["priority"]), created_at=_moment(found["created_at"]))
        out.append({"id": m["id"], "connector": m["connector_id"], "conversation": m["conversation_id"],
                    "channel": m["channel"], "direction": m["direction"], "author": m["author_id"], "text": m["text"],
                    "url": m["url"], "sent_at": _moment(m["sent_at"]), "received_at": _moment(m["received_at"]),
                    "classification": found})
    return out


def _current():
    return Prefetch("classifications", queryset=Classification.objects.filter(is_current=True), to_attr="current")


@extend_schema_view(list=extend_schema(parameters=MESSAGE_FILTERS))
class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "messages"
    serializer_class = MessageSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        messages = Message.objects.filter(connector_id__in=access.connector_ids(self.request.user))
        messages = messages.prefetch_related(_current())
        if self.action != "list":
            return messages
        params = self.request.query_params
        for name in ("conversation", "connector"):
            number = base.query_int(params, name)
            if number is not None:
                messages = messages.filter(**{f"{name}_id": number})
        if params.get("channel"):
            messages = messages.filter(channel=params["channel"][:40])
        if params.get("direction"):
            if params["direction"] not in Direction.values:
                raise InvalidRequest(f"direction is {' or '.join(Direction.values)}")
            messages = messages.filter(direction=params["direction"])
        for name in ("sentiment", "lane"):
            if params.get(name):
                messages = messages.filter(**{"classifications__is_current": True,
                                              f"classifications__{name}": params[name][:20]})
        for name, lookup in (("sent_after", "sent_at__gte"), ("sent_before", "sent_at__lt")):
            moment = base.query_time(params, name)
            if moment is not None:
                messages = messages.filter(**{lookup: moment})
        return messages

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "message")

    def list(self, request, *args, **kwargs):
        """The page as plain rows: the same JSON as MessageSerializer (the schema's), built from
        .values() of the columns it shows. Model instances cost most of a page (each message's raw
        payload decoded, every field through a serializer field): 50 rows took ~200 ms."""
        rows = self.get_queryset().prefetch_related(None).values(*MESSAGE_COLUMNS)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(message_rows(page))

    @extend_schema(responses=ClassificationSerializer(many=True))
    @action(detail=True, methods=["get"], scope_area="learning", pagination_class=None)
    def classifications(self, request, pk=None):
        """Every classification of the message, the current one first."""
        message = self.get_object()
        rows = Classification.objects.filter(message=message).order_by("-is_current", "-id")[:50]
        return Response(ClassificationSerializer(rows, many=True).data)


class ConversationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "messages"
    serializer_class = ConversationSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        return (Conversation.objects.filter(connector_id__in=access.connector_ids(self.request.user))
                .select_related("case"))

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "conversation")


class CorrectionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Agents' corrections of classifications. Posting one goes through the case, as the console's
    one-click correction does (a lane correction also moves the case)."""

    scope_area = "learning"
    serializer_class = CorrectionSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        return Correction.objects.filter(message__connector_id__in=access.connector_ids(self.request.user))

    @extend_schema(request=CorrectionInSerializer, responses={201: CorrectionSerializer})
    def create(self, request):
        data = CorrectionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        correction = case_actions.correct(request.user, v["case"], v["message"], v["field"], v["value"])
        return Response(CorrectionSerializer(correction).data, status=status.HTTP_201_CREATED)


def visible_contacts(user):
    return Contact.objects.filter(conversations__connector_id__in=access.connector_ids(user)).distinct()


def visible_customers(user):
    return Customer.objects.filter(pk__in=visible_contacts(user).filter(customer__isnull=False)
                                   .values("customer_id"))


class ContactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "customers"
    serializer_class = ContactSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        contacts = Contact.objects.filter(pk__in=visible_contacts(self.request.user).values("pk"))
        customer = base.query_int(self.request.query_params, "customer") if self.action == "list" else None
        return contacts.filter(customer_id=customer) if customer is not None else contacts

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "contact")


class CustomerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "customers"
    serializer_class = CustomerSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        return visible_customers(self.request.user)

    def get_object(self):
        return base.by_id(self.get_queryset(), self.kwargs["pk"], "customer")

    @extend_schema(request=CustomerSerializer, responses=CustomerSerializer)
    def partial_update(self, request, pk=None):
        """Name, email, phone and VIP flag (routing rules read it)."""
        access.require_reply(request.user)
        customer = self.get_object()
        change = CustomerSerializer(customer, data=request.data, partial=True)
        change.is_valid(raise_exception=True)
        change.save()
        return Response(change.data)

    @extend_schema(request=MergeSerializer, responses=CustomerSerializer)
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None):
        """Fold other customers into this one (a supervisor confirms they are one person)."""
        access.require_supervisor(request.user)
        target = self.get_object()
        data = MergeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = set(data.validated_data["others"]) - {target.pk}
        others = list(self.get_queryset().filter(pk__in=ids))
        if len(others) != len(ids):
            raise CaseNotFound("no such customer")
        return Response(CustomerSerializer(merge_customers(target, *others)).data)
