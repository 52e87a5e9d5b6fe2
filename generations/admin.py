from __future__ import annotations

from django.contrib import admin

from generations.models import Generation, GenerationEvent


class GenerationEventInline(admin.TabularInline):
    model = GenerationEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "from_state", "to_state", "detail"]


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["prompt_short", "owner", "state", "model_name", "created_at", "upstream_id"]
    list_filter = ["state", "model_name"]
    search_fields = ["prompt", "upstream_id", "code"]
    raw_id_fields = ["owner", "parent"]
    readonly_fields = ["code", "created_at", "updated_at", "upstream_response"]
    inlines = [GenerationEventInline]

    @admin.display(description="prompt")
    def prompt_short(self, obj: Generation) -> str:
        return obj.prompt[:80]
