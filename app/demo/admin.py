from django.contrib import admin

from .models import Heartbeat, SlowTaskCompletion


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "count", "last_run")


@admin.register(SlowTaskCompletion)
class SlowTaskCompletionAdmin(admin.ModelAdmin):
    list_display = ("task_id", "runs", "hostname", "completed_at")
    search_fields = ("task_id",)
