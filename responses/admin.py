"""Admin pages for what admins set up: teams (members, connectors), queues, routing rules, agent
profiles and canned responses. Cases, replies and events are read-only here: they change through
the console's actions, which emit the events consoles rely on."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from cxm.admin import ReadOnlyAdmin
from responses.models import AgentProfile, CannedResponse, Case, ConsoleEvent, Queue, Reply, RoutingRule, Team
from responses.rules import ACTIONS, CONDITIONS
from responses.teams import ensure_default_queues


class QueueInline(admin.TabularInline):
    model = Queue
    extra = 0
    fields = ["name", "slug", "lane", "sla_minutes", "auto_assign", "position"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["members", "connectors"]
    inlines = [QueueInline]

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.members.count()

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            ensure_default_queues(obj)  # Care, Amplify and Recover, with their SLAs


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["position", "name", "enabled", "stop", "updated_at"]
    list_display_links = ["name"]
    list_editable = ["position", "enabled"]
    fields = ["name", "position", "enabled", "conditions", "actions", "stop"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["conditions"].help_text = (
            'A list of {"field", "op", "value"}; all must hold. Fields and their ops: '
            + "; ".join(f"{name}: {', '.join(sorted(ops))}" for name, ops in CONDITIONS.items())
            + '. Example: [{"field": "recent_negatives", "op": "at_least", "value": {"count": 3, "minutes": 60}}]'
        )
        form.base_fields["actions"].help_text = (
            f"An object with any of: {', '.join(sorted(ACTIONS))}. queue and team are slugs; acknowledge is "
            'a canned response id. Example: {"team": "billing", "sla_minutes": 30, "tags": ["refund"]}'
        )
        return form


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ["title", "shortcut", "team", "updated_at"]
    list_filter = ["team"]
    search_fields = ["title", "text"]


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    can_delete = False
    fields = ["role", "presence", "capacity", "languages", "channels"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class CXMUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, AgentProfileInline]
    list_display = [*UserAdmin.list_display, "role"]

    @admin.display(description="role")
    def role(self, obj):
        profile = getattr(obj, "cxm_profile", None)
        return profile.get_role_display() if profile else ("admin" if obj.is_superuser else "—")


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "team", "queue", "status", "lane", "priority", "assignee", "sla_state", "opened_at"]
    list_filter = ["team", "status", "lane", "sla_state"]
    list_select_related = ["team", "queue", "assignee"]


@admin.register(Reply)
class ReplyAdmin(ReadOnlyAdmin):
    list_display = ["id", "case", "status", "attempts", "author", "automatic", "created_at", "delivered_at"]
    list_filter = ["status", "automatic"]
    readonly_fields = ["last_error"]


@admin.register(ConsoleEvent)
class ConsoleEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "team", "user", "case", "created_at"]
    list_filter = ["type"]
