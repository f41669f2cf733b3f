"""The Sync Run page (its progress while it runs, and its activity log, a page at a time) and the
Activity Log list."""

from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from ..models import ActivityLog, ContactSyncSetup, Direction, Outcome, RunStatus, SyncMode, SyncRun
from ..services.health import run_progress, untaken_run_message
from .ownership import OwnedByUserAdmin

RUN_LOG_PER_PAGE = 50


def run_log_context(request: HttpRequest, run: SyncRun) -> dict:
    """One page of the run's log, filtered by ?log_outcome, ?log_direction and ?log_q (the run page's
    own parameters), and the Activity Log list with the same filters."""
    outcome = request.GET.get("log_outcome", "")
    outcome = outcome if outcome in Outcome.values else ""
    direction = request.GET.get("log_direction", "")
    direction = direction if direction in Direction.values else ""
    text = request.GET.get("log_q", "").strip()
    entries = ActivityLog.objects.filter(run=run).order_by("-created_at", "-id")
    if outcome:
        entries = entries.filter(outcome=outcome)
    if direction:
        entries = entries.filter(direction=direction)
    if text:
        entries = entries.filter(message__icontains=text)
    page = Paginator(entries, RUN_LOG_PER_PAGE).get_page(request.GET.get("log_p"))
    filters = {"log_outcome": outcome, "log_direction": direction, "log_q": text}

    def page_url(number: int) -> str:
        return "?" + urlencode({**{k: v for k, v in filters.items() if v}, "log_p": number})

    in_activity_log = {"outcome__exact": outcome, "direction__exact": direction, "q": text}
    return {
        "page": page,
        "outcome": outcome,
        "direction": direction,
        "q": text,
        "filtered": any(filters.values()),
        "outcomes": Outcome.choices,
        "directions": Direction.choices,
        "previous_url": page_url(page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_url(page.next_page_number()) if page.has_next() else "",
        "activity_log_url": reverse("admin:exchange_sync_activitylog_changelist")
        + "?"
        + urlencode({"run__id__exact": run.pk, **{k: v for k, v in in_activity_log.items() if v}}),
    }


@admin.register(SyncRun)
class SyncRunAdmin(OwnedByUserAdmin):
    # These fit a 1,400-pixel screen beside the admin's menu and filters; each count, and the finish
    # time, is on the run's page.
    list_display = (
        "id",
        "user",
        "mode",
        "trigger",
        "status",
        "queued_at",
        "duration",
        "result",
    )
    list_filter = ("status", "mode", "trigger")
    list_select_related = ("user",)
    date_hierarchy = "queued_at"

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # A Preview's counts are its plan, and its sections say so.
        plan = ": what a Sync would do (nothing was written)" if obj and obj.mode == SyncMode.PREVIEW else ""
        return (
            (None, {"fields": ("user", "mode", "trigger", "status", "error", "summary_line")}),
            (
                "Timing",
                {"fields": ("queued_at", "started_at", "heartbeat_at", "finished_at", "duration", "slice")},
            ),
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

    @admin.display(description="Result")
    def result(self, obj: SyncRun) -> str:
        return obj.result_line()

    @admin.display(description="Duration", ordering=F("finished_at") - F("started_at"))
    def duration(self, obj: SyncRun) -> str:
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"
        return ""

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            extra["refresh_seconds"] = 0 if run.is_finished else 2
            extra["progress"] = run_progress(run=run)
            extra["untaken"] = untaken_run_message(run=run)
            extra["run_log"] = run_log_context(request, run)
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
