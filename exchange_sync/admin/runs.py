"""The Sync Run page (with its activity log inline) and the Activity Log list."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..models import ActivityLog, ContactSyncSetup, RunStatus, SyncMode, SyncRun
from .ownership import OwnedByUserAdmin


class ActivityLogInline(admin.TabularInline):
    model = ActivityLog
    fields = ("created_at", "outcome", "direction", "contact_no", "email", "message")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    show_change_link = True
    verbose_name_plural = "Activity log (latest 100)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).order_by("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # A salesperson has no model permissions, so Django would hide the log of their own run.
        # `obj` is the run, fetched through SyncRunAdmin.get_queryset (None when Django builds the
        # inline's queryset, which the formset then limits to that run's entries).
        return obj is None or request.user.is_superuser or obj.user_id == request.user.pk


@admin.register(SyncRun)
class SyncRunAdmin(OwnedByUserAdmin):
    list_display = (
        "id",
        "user",
        "mode",
        "trigger",
        "status",
        "queued_at",
        "finished_at",
        "duration",
        "created",
        "updated",
        "linked",
        "deleted",
        "recreated",
        "imported",
        "bc_updated",
        "skipped",
        "failed",
        "graph_requests",
    )
    list_filter = ("status", "mode", "trigger")
    list_select_related = ("user",)
    date_hierarchy = "queued_at"
    inlines = [ActivityLogInline]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # A Preview's counts are its plan, and its sections say so.
        plan = ": what a Sync would do (nothing was written)" if obj and obj.mode == SyncMode.PREVIEW else ""
        return (
            (None, {"fields": ("user", "mode", "trigger", "status", "error", "summary_line")}),
            ("Timing", {"fields": ("queued_at", "started_at", "heartbeat_at", "finished_at", "duration")}),
            (
                f"Outlook (Business Central → Outlook){plan}",
                {"fields": ("created", "updated", "linked", "recreated", "deleted")},
            ),
            (f"Business Central (Outlook → Business Central){plan}", {"fields": ("imported", "bc_updated")}),
            (
                "Other",
                {"fields": ("skipped", "failed", "graph_requests", "allow_mass_delete", "job_queue_entry")},
            ),
        )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in SyncRun._meta.fields] + ["summary_line", "duration"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Summary")
    def summary_line(self, obj: SyncRun) -> str:
        return obj.summary_line()

    @admin.display(description="Duration")
    def duration(self, obj: SyncRun) -> str:
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"
        return ""

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            extra["refresh_seconds"] = 0 if run.is_finished else 2
            extra["activity_log_url"] = (
                reverse("admin:exchange_sync_activitylog_changelist") + f"?run__id__exact={run.pk}"
            )
            setup = ContactSyncSetup.objects.filter(user_id=run.user_id).first()
            if setup is not None:
                extra["setup_url"] = reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
                if run.status == RunStatus.FAILED and "mass deletion" in run.error:
                    extra["allow_mass_delete_url"] = reverse(
                        "admin:exchange_sync_contactsyncsetup_run", args=[setup.pk, "full-sync"]
                    )
        return super().change_view(request, object_id, form_url, extra)


@admin.register(ActivityLog)
class ActivityLogAdmin(OwnedByUserAdmin):
    list_display = ("created_at", "user", "outcome", "direction", "contact_no", "message", "run_link")
    list_filter = ("outcome", "direction", "action")
    actions = None
    search_fields = ("contact_no", "email", "message")
    list_select_related = ("run", "user")
    fields = (
        "created_at",
        "user",
        "run",
        "contact",
        "contact_no",
        "email",
        "graph_id",
        "direction",
        "action",
        "outcome",
        "message",
        "details",
    )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # "Activity Log" of one run links here with ?run__id__exact=N; the queryset is already the user's.
        return lookup == "run__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="Run")
    def run_link(self, obj: ActivityLog) -> str:
        url = reverse("admin:exchange_sync_syncrun_change", args=[obj.run_id])
        return format_html('<a href="{}">#{}</a>', url, obj.run_id)
