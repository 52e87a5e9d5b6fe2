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
    list_display = ["prompt_short", "owner", "state", "failure_reason", "created_at", "upstream_id"]
    list_filter = ["state", "model_name", "mode", "hidden"]
    search_fields = ["prompt", "title", "upstream_id", "code", "failure_reason"]
    raw_id_fields = ["owner", "parent", "end_parent"]
    # What went wrong, technically: for admins, never shown to users as is.
    readonly_fields = [
        "code", "created_at", "updated_at", "submitted_at", "completed_at", "upstream_id",
        "failure_detail", "upstream_response", "attempts", "poll_errors", "claimed_until",
    ]  # fmt: skip
    inlines = [GenerationEventInline]

    @admin.display(description="prompt")
    def prompt_short(self, obj: Generation) -> str:
        return obj.prompt[:80]
