from django.contrib import admin

from cxm.admin import ReadOnlyAdmin
from learning.models import (
    Classification,
    Correction,
    Intent,
    IntentExample,
    IntentModel,
    ModelVersion,
    PriorityWeights,
    Term,
)


class IntentExampleInline(admin.TabularInline):
    model = IntentExample
    extra = 3
    fields = ["text", "source"]
    readonly_fields = ["source"]


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "lane", "priority_weight", "enabled", "example_count"]
    list_filter = ["lane", "enabled"]
    search_fields = ["name", "slug", "examples__text"]
    inlines = [IntentExampleInline]

    @admin.display(description="examples")
    def example_count(self, obj):
        return obj.examples.count()


@admin.register(Term)
class TermAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "synonyms", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]


@admin.register(PriorityWeights)
class PriorityWeightsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "negativity", "anger", "intent", "reach", "history", "escalation", "updated_at"]

    def has_add_permission(self, request):
        return not PriorityWeights.objects.exists()


@admin.register(Classification)
class ClassificationAdmin(ReadOnlyAdmin):
    list_display = ["message_id", "lane", "sentiment", "emotion", "intent", "language", "priority", "status",
                    "model_version", "is_current", "created_at"]
    list_filter = ["lane", "sentiment", "status", "is_current", "model_version"]
    raw_id_fields = ["message"]


@admin.register(Correction)
class CorrectionAdmin(ReadOnlyAdmin):
    list_display = ["message_id", "field", "previous", "value", "user", "created_at", "used_in_version"]
    list_filter = ["field"]


@admin.register(IntentModel)
class IntentModelAdmin(ReadOnlyAdmin):
    list_display = ["version", "encoder", "example_count", "created_at"]
    exclude = ["weights"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "active", "created_at"]
    readonly_fields = ["name", "version", "path", "metrics", "created_at"]
