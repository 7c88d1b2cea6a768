"""What the API returns and accepts. Output serializers are read-only views of rows; input
serializers only check shapes, and the actions (responses.cases, responses.replies, ...) decide."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.validators import EmailValidator
from rest_framework import serializers

from learning.models import Classification, Correction, Intent
from listening.models import Connector, Contact, Conversation, Customer, Message
from responses.models import ApiToken, Case, CaseStatus, Note, Queue, Reply, RoutingRule, Team


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name"]
        read_only_fields = fields


class CaseSerializer(serializers.ModelSerializer):
    assignee = UserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Case
        fields = ["id", "conversation", "connector", "channel", "team", "queue", "assignee", "status", "lane",
                  "priority", "tags", "sla_minutes", "sla_due_at", "sla_state", "awaiting_assignment",
                  "waiting_since", "last_message", "opened_at", "first_response_at", "resolved_at", "updated_at"]
        read_only_fields = fields


class CaseChangeSerializer(serializers.Serializer):
    """Any of the three; each one present is applied by its own action, in this order."""

    status = serializers.ChoiceField(choices=CaseStatus.choices, required=False)
    assignee = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                        help_text="A user id of the case's team; null unassigns.")
    tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False, max_length=20)


class NoteSerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Note
        fields = ["id", "case", "author", "text", "created_at"]
        read_only_fields = ["id", "case", "author", "created_at"]


class NoteInSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4000, trim_whitespace=True)


class ReplySerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Reply
        fields = ["id", "case", "author", "text", "status", "automatic", "attempts", "last_error", "message",
                  "created_at", "delivered_at", "resolve_on_delivery"]
        read_only_fields = fields


class ReplyInSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=40_000)
    resolve = serializers.BooleanField(default=False, help_text="Resolve the case once the reply is delivered.")


class ClassificationSerializer(serializers.ModelSerializer):
    # Blank while a classification failed: the model's choices do not list "", so say text.
    sentiment = serializers.CharField(read_only=True)
    lane = serializers.CharField(read_only=True)

    class Meta:
        model = Classification
        fields = ["id", "message", "status", "sentiment", "sentiment_scores", "emotion", "emotion_scores", "intent",
                  "intent_scores", "language", "lane", "priority", "topics", "model_name", "model_version",
                  "created_at"]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    url = serializers.CharField(read_only=True, help_text="The message on its source; blank when it has none.")
    classification = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "connector", "conversation", "channel", "direction", "author", "text", "url", "sent_at",
                  "received_at", "classification"]
        read_only_fields = fields

    def get_classification(self, message: Message) -> ClassificationSerializer(allow_null=True):  # type: ignore[valid-type]
        current = getattr(message, "current", None)
        return ClassificationSerializer(current[0]).data if current else None


class ConversationSerializer(serializers.ModelSerializer):
    case = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = ["id", "connector", "channel", "subject", "contact", "started_at", "last_message_at",
                  "message_count", "case"]
        read_only_fields = fields

    def get_case(self, conversation: Conversation) -> int | None:
        case = getattr(conversation, "case", None)
        return case.pk if case is not None else None


class CorrectionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Correction
        fields = ["id", "message", "field", "previous", "value", "user", "created_at"]
        read_only_fields = fields


class CorrectionInSerializer(serializers.Serializer):
    case = serializers.IntegerField(min_value=1)
    message = serializers.IntegerField(min_value=1)
    field = serializers.ChoiceField(choices=Correction.Field.choices)
    value = serializers.CharField(max_length=60)


class ContactSerializer(serializers.ModelSerializer):
    # Blank when unknown: plain text in the schema (format uri/email would refuse "").
    profile_url = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "channel", "external_id", "handle", "display_name", "profile_url", "followers", "email",
                  "email_verified", "phone", "phone_verified", "customer", "first_seen_at", "last_seen_at",
                  "message_count"]
        read_only_fields = fields


class CustomerSerializer(serializers.ModelSerializer):
    email = serializers.CharField(required=False, allow_blank=True, max_length=254, validators=[EmailValidator()],
                                  help_text="An email address, or blank.")

    class Meta:
        model = Customer
        fields = ["id", "display_name", "email", "phone", "vip", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"email": {"required": False}, "phone": {"required": False}}


class MergeSerializer(serializers.Serializer):
    others = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=50,
                                   help_text="Customers folded into this one (then deleted).")


class ConnectorSerializer(serializers.ModelSerializer):
    """Health and counters only: never config (it may hold URLs with keys) nor credentials."""

    class Meta:
        model = Connector
        fields = ["id", "kind", "name", "slug", "enabled", "health", "last_error", "last_error_at",
                  "last_success_at", "consecutive_failures", "messages_received", "duplicates_received",
                  "next_poll_at", "created_at"]
        read_only_fields = fields


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "members", "connectors", "created_at"]
        read_only_fields = fields


class QueueSerializer(serializers.ModelSerializer):
    class Meta:
        model = Queue
        fields = ["id", "team", "name", "slug", "lane", "sla_minutes", "auto_assign", "position"]
        read_only_fields = fields


class RuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = RoutingRule
        fields = ["id", "name", "position", "enabled", "conditions", "actions", "stop", "updated_at"]
        read_only_fields = fields


class IntentSerializer(serializers.ModelSerializer):
    lane = serializers.CharField(read_only=True, help_text="The lane the intent puts a message in; blank: none.")

    class Meta:
        model = Intent
        fields = ["id", "slug", "name", "description", "lane", "priority_weight", "enabled", "counts_on_dashboards"]
        read_only_fields = fields


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "kind", "prefix", "scopes", "expires_at", "last_used_at", "revoked_at", "created_at"]
        read_only_fields = fields
