"""Cases, their notes and replies, over the same actions as the console (responses.cases,
responses.assignment, responses.replies): an agent's token changes exactly what the agent could."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from learning.models import Classification
from responses import access, assignment, cases as case_actions, replies
from responses.api import base
from responses.api.serializers import (
    CaseChangeSerializer,
    CaseSerializer,
    NoteInSerializer,
    NoteSerializer,
    ReplyInSerializer,
    ReplySerializer,
)
from responses.exceptions import InvalidRequest
from responses.models import CaseStatus, Note, Reply

CASE_FILTERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=CaseStatus.values, description="One status."),
    OpenApiParameter("lane", OpenApiTypes.STR),
    OpenApiParameter("team", OpenApiTypes.INT),
    OpenApiParameter("queue", OpenApiTypes.INT),
    OpenApiParameter("assignee", OpenApiTypes.STR, description="A user id, 'me' or 'none'."),
    OpenApiParameter("channel", OpenApiTypes.STR),
    OpenApiParameter("tag", OpenApiTypes.STR),
    OpenApiParameter("sentiment", OpenApiTypes.STR, enum=["negative", "neutral", "positive"],
                     description="Cases with a message of this sentiment (its current classification)."),
    OpenApiParameter("opened_after", OpenApiTypes.DATETIME),
    OpenApiParameter("opened_before", OpenApiTypes.DATETIME),
    OpenApiParameter("updated_after", OpenApiTypes.DATETIME),
]
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="Up to 64 of [A-Za-z0-9-_:.]. The same key and body answer as the first time; "
                "the same key with another body is a 422.")


@extend_schema_view(list=extend_schema(parameters=CASE_FILTERS))
class CaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scope_area = "cases"
    serializer_class = CaseSerializer
    pagination_class = base.IdCursor

    def get_queryset(self):
        if base.schema_only(self):
            return self.get_serializer_class().Meta.model.objects.none()
        cases = access.visible_cases(self.request.user).select_related("assignee")
        if self.action != "list":
            return cases
        return filter_cases(cases, self.request)

    def get_object(self):
        return access.get_case(self.request.user, self.kwargs["pk"])

    @extend_schema(request=CaseChangeSerializer, responses=CaseSerializer)
    def partial_update(self, request, pk=None):
        """Change status, assignee and tags (as the console's buttons do)."""
        case = self.get_object()
        change = CaseChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        data = change.validated_data
        if "status" in data:
            case = case_actions.set_status(request.user, case.pk, data["status"])
        if "assignee" in data:
            assignee = None
            if data["assignee"] is not None:
                assignee = get_user_model().objects.filter(pk=data["assignee"], is_active=True).first()
                if assignee is None:
                    raise InvalidRequest("no such agent")
            case = assignment.assign_case(case.pk, assignee, request.user)
        if "tags" in data:
            case = case_actions.set_tags(request.user, case.pk, data["tags"])
        case.refresh_from_db()
        return Response(CaseSerializer(case).data)

    @extend_schema(methods=["GET"], responses=NoteSerializer(many=True))
    @extend_schema(methods=["POST"], request=NoteInSerializer, responses={201: NoteSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def notes(self, request, pk=None):
        case = self.get_object()
        if request.method == "GET":
            notes = Note.objects.filter(case=case).select_related("author").order_by("id")[:500]
            return Response(NoteSerializer(notes, many=True).data)
        note_in = NoteInSerializer(data=request.data)
        note_in.is_valid(raise_exception=True)
        note = case_actions.add_note(request.user, case.pk, note_in.validated_data["text"])
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=ReplySerializer(many=True))
    @extend_schema(methods=["POST"], request=ReplyInSerializer, responses={201: ReplySerializer},
                   parameters=[IDEMPOTENCY])
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def replies(self, request, pk=None):
        """Send a reply on the customer's channel (delivered by a worker). Retry with the same
        Idempotency-Key: the reply is stored and sent once."""
        case = self.get_object()
        if request.method == "GET":
            rows = Reply.objects.filter(case=case).select_related("author").order_by("id")[:500]
            return Response(ReplySerializer(rows, many=True).data)
        key = base.idempotency_key(request)
        print_ = base.fingerprint(request, request.data)
        earlier = base.replayed(request, key, print_)
        if earlier is not None:
            return earlier
        reply_in = ReplyInSerializer(data=request.data)
        reply_in.is_valid(raise_exception=True)
        # Namespaced per user: an API client's key never meets a console's or another user's.
        action_key = f"api-{request.user.pk}-{key}" if key else ""
        reply = replies.send_reply(request.user, case.pk, reply_in.validated_data["text"],
                                   idempotency_key=action_key, resolve=reply_in.validated_data["resolve"])
        response = Response(ReplySerializer(reply).data, status=status.HTTP_201_CREATED)
        return base.remember(request, key, print_, response)


def filter_cases(cases, request):
    params = request.query_params
    value = params.get("status")
    if value:
        if value not in CaseStatus.values:
            raise InvalidRequest(f"status must be one of {', '.join(CaseStatus.values)}")
        cases = cases.filter(status=value)
    for name in ("lane", "channel"):
        if params.get(name):
            cases = cases.filter(**{name: params[name][:60]})
    for name in ("team", "queue"):
        number = base.query_int(params, name)
        if number is not None:
            cases = cases.filter(**{f"{name}_id": number})
    who = params.get("assignee")
    if who == "me":
        cases = cases.filter(assignee=request.user)
    elif who == "none":
        cases = cases.filter(assignee__isnull=True)
    elif who:
        cases = cases.filter(assignee_id=base.query_int(params, "assignee"))
    if params.get("tag"):
        tag = params["tag"][:40]
        # JSON containment (tags__contains) is not on SQLite: match the quoted tag in the JSON text.
        cases = cases.filter(tags__icontains=f'"{tag}"')
    sentiment = params.get("sentiment")
    if sentiment:
        if sentiment not in ("negative", "neutral", "positive"):
            raise InvalidRequest("sentiment is negative, neutral or positive")
        cases = cases.filter(Exists(Classification.objects.filter(
            message__conversation_id=OuterRef("conversation_id"), is_current=True, sentiment=sentiment)))
    for name, lookup in (("opened_after", "opened_at__gte"), ("opened_before", "opened_at__lt"),
                         ("updated_after", "updated_at__gte")):
        moment = base.query_time(params, name)
        if moment is not None:
            cases = cases.filter(**{lookup: moment})
    return cases
