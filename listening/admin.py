import json

from django import forms
from django.contrib import admin

from cxm.admin import ReadOnlyAdmin
from cxm.client_address import client_ip
from listening import audit
from listening.models import AuditEvent, Connector, Contact, Conversation, Customer, Message


class ConnectorForm(forms.ModelForm):
    """Credentials are write-only: the form never shows stored secrets, and leaving the field
    blank keeps them."""

    new_credentials = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text='JSON object of secrets, e.g. {"bot_token": "..."}; blank keeps the stored ones.',
    )

    class Meta:
        model = Connector
        fields = ["kind", "name", "slug", "enabled", "config", "poll_interval_seconds"]

    def clean_config(self):
        from listening.connectors import UnknownConnectorKind, get_connector_class

        kind = self.cleaned_data.get("kind")
        try:
            return get_connector_class(kind).validate_config(self.cleaned_data.get("config") or {})
        except UnknownConnectorKind as exc:
            raise forms.ValidationError(str(exc)) from None
        except Exception as exc:  # ConfigInvalid and friends carry a reason
            raise forms.ValidationError(getattr(exc, "reason", str(exc))) from None

    def clean_new_credentials(self):
        raw = self.cleaned_data.get("new_credentials") or ""
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise forms.ValidationError("credentials must be a JSON object") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("credentials must be a JSON object")
        return value

    def save(self, commit=True):
        connector = super().save(commit=False)
        if self.cleaned_data.get("new_credentials") is not None:
            connector.credentials = self.cleaned_data["new_credentials"]
        if commit:
            connector.save()
        return connector


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    form = ConnectorForm
    list_display = ["name", "kind", "slug", "enabled", "health", "last_success_at", "messages_received"]
    list_filter = ["kind", "enabled", "health"]
    search_fields = ["name", "slug"]
    readonly_fields = [
        "health", "last_error", "last_error_at", "last_success_at", "consecutive_failures",
        "messages_received", "duplicates_received", "deliveries_rejected", "cursor", "next_poll_at",
    ]

    # Every change is audited (listening.audit): who, when, what; never a secret.
    def save_model(self, request, obj, form, change):
        before = audit.snapshot(Connector.objects.filter(pk=obj.pk).first()) if change else {}
        super().save_model(request, obj, form, change)
        audit.record(request.user, "changed" if change else "created", obj, before, audit.snapshot(obj),
                     ip=client_ip(request), always=not change)

    def delete_model(self, request, obj):
        before = audit.snapshot(obj)
        audit.record(request.user, "deleted", obj, before, {}, ip=client_ip(request), always=True)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for connector in queryset:
            self.delete_model(request, connector)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "connector_label", "changed_fields", "ip"]
    list_filter = ["action"]
    search_fields = ["actor_name", "connector_label"]
    date_hierarchy = "created_at"

    @admin.display(description="changed")
    def changed_fields(self, event: AuditEvent) -> str:
        return ", ".join(sorted(event.changes))

    def has_delete_permission(self, request, obj=None):
        return False  # an audit log nobody can edit or delete


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["__str__", "email", "phone", "created_at"]
    search_fields = ["display_name", "email", "phone"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "channel", "handle", "followers", "message_count", "last_seen_at"]
    list_filter = ["channel"]
    search_fields = ["handle", "display_name", "external_id"]
    raw_id_fields = ["customer"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "channel", "connector", "contact", "message_count", "last_message_at"]
    list_filter = ["channel", "connector"]
    list_select_related = ["connector", "contact"]
    raw_id_fields = ["contact"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["short_text", "channel", "direction", "author", "connector", "sent_at", "received_at"]
    list_filter = ["channel", "direction", "connector"]
    list_select_related = ["author", "connector"]
    search_fields = ["text", "external_id"]
    raw_id_fields = ["conversation", "author", "parent"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]

    @admin.display(description="text")
    def short_text(self, message: Message) -> str:
        return message.text[:120]
