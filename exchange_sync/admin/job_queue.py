"""Business Central's Job Queue Entries list and Job Queue Entry Card, with their buttons."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..models import CodeunitId, JobQueueEntry, JobQueueLogEntry, JobStatus, PassUser
from ..services import job_queue
from .ownership import OwnedByUserAdmin, post_only_object

LOG_ENTRIES_ON_CARD = 10

JOB_QUEUE_BUTTONS = {
    "run-now": ("Run Now", job_queue.run_job_queue_entry_now, "is queued to run now"),
    "on-hold": ("Set On Hold", job_queue.set_job_queue_entry_on_hold, "is on hold"),
    "ready": ("Set Status to Ready", job_queue.set_job_queue_entry_ready, "is ready"),
}


@admin.register(JobQueueEntry)
class JobQueueEntryAdmin(OwnedByUserAdmin):
    """Business Central's Job Queue Entries list and Job Queue Entry Card. Saving, deleting and the
    status buttons go through exchange_sync.services.job_queue, which keeps the entry's Schedule in step."""

    list_display = (
        "object_type_to_run",
        "object_id_to_run",
        "description",
        "status",
        "last_run_at",
        "next_run",
        "last_error_short",
        "sync_runs",
    )
    list_filter = ("status",)
    list_select_related = ("user",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "user",
                    "object_type_to_run",
                    "object_id_to_run",
                    "object_caption",
                    "description",
                    "status",
                )
            },
        ),
        (
            "Recurrence",
            {
                "fields": (
                    "recurring",
                    "minutes_between_runs",
                    JobQueueEntry.WEEKDAY_FIELDS,
                    "earliest_start_at",
                )
            },
        ),
        ("Runs", {"fields": ("last_run_at", "next_run", "last_error", "sync_runs", "log_entries")}),
    )
    readonly_fields = (
        "object_caption",
        "status",
        "last_run_at",
        "next_run",
        "last_error",
        "sync_runs",
        "log_entries",
    )
    actions = ["run_now_selected", "set_on_hold_selected", "set_ready_selected"]

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        known = ", ".join(f"{code.value}: {code.label}" for code in CodeunitId)
        kwargs["help_texts"] = {"object_id_to_run": f"Known Object IDs: {known}."}
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    @admin.display(description="Object Caption to Run")
    def object_caption(self, obj: JobQueueEntry) -> str:
        known = obj.object_id_to_run in CodeunitId.values
        return CodeunitId(obj.object_id_to_run).label if known else "—"

    @admin.display(description="Next run", ordering="next_run_at")
    def next_run(self, obj: JobQueueEntry):
        # On Hold and Error keep the last computed time, which passes while the entry waits.
        if obj.status in (JobStatus.ON_HOLD, JobStatus.ERROR):
            return f"Paused ({obj.get_status_display()})"
        return obj.next_run_at

    @admin.display(description="Last error")
    def last_error_short(self, obj: JobQueueEntry) -> str:
        return obj.last_error if len(obj.last_error) <= 120 else obj.last_error[:119] + "…"

    @admin.display(description="Sync runs")
    def sync_runs(self, obj: JobQueueEntry) -> str:
        if obj.pk is None:
            return "—"
        changelist = reverse("admin:exchange_sync_syncrun_changelist")
        every = urlencode({"job_queue_entry__id__exact": obj.pk})
        if obj.last_run_at is None:
            return format_html('<a href="{}?{}">all runs</a>', changelist, every)
        last = urlencode(
            {"job_queue_entry__id__exact": obj.pk, "queued_at__gte": obj.last_run_at.isoformat()}
        )
        return format_html(
            '<a href="{}?{}">of the last run</a> · <a href="{}?{}">all runs</a>',
            changelist,
            last,
            changelist,
            every,
        )

    @admin.display(description="Job Queue Log Entries")
    def log_entries(self, obj: JobQueueEntry) -> str:
        if obj.pk is None:
            return "—"
        newest = list(obj.log_entries.all()[:LOG_ENTRIES_ON_CARD])
        if not newest:
            return "No passes yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{} / {} / {} of {}</td>'
            "<td>{}</td></tr>",
            (
                (
                    reverse("admin:exchange_sync_jobqueuelogentry_change", args=[log.pk]),
                    log.started_at,
                    log.ended_at or "—",
                    log.get_status_display(),
                    log.users_synced,
                    log.users_skipped,
                    log.users_failed,
                    log.users_total,
                    log.error_message if len(log.error_message) <= 200 else log.error_message[:199] + "…",
                )
                for log in newest
            ),
        )
        every = (
            reverse("admin:exchange_sync_jobqueuelogentry_changelist")
            + "?"
            + urlencode({"entry__id__exact": obj.pk})
        )
        return format_html(
            '<table class="job-queue-log"><thead><tr><th>Start</th><th>End</th><th>Status</th>'
            "<th>Synced / skipped / failed</th><th>Error Message</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">all log entries</a></p>',
            rows,
            every,
        )

    def save_model(self, request: HttpRequest, obj: JobQueueEntry, form, change: bool) -> None:
        job_queue.save_job_queue_entry(entry=obj)

    def delete_model(self, request: HttpRequest, obj: JobQueueEntry) -> None:
        job_queue.delete_job_queue_entry(entry=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for entry in queryset:
            job_queue.delete_job_queue_entry(entry=entry)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/do/<slug:button>/",
                self.admin_site.admin_view(self.button_view),
                name="exchange_sync_jobqueueentry_button",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra = {"job_queue_buttons": [(slug, label) for slug, (label, _, _) in JOB_QUEUE_BUTTONS.items()]}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def button_view(self, request: HttpRequest, object_id: str, button: str):
        entry = post_only_object(self, request, object_id)
        if button not in JOB_QUEUE_BUTTONS:
            raise Http404("No such action")
        self._apply(request, entry, button)
        return redirect("admin:exchange_sync_jobqueueentry_change", entry.pk)

    def _apply(self, request: HttpRequest, entry: JobQueueEntry, button: str) -> None:
        label, service, done = JOB_QUEUE_BUTTONS[button]
        try:
            service(entry=entry)
        except job_queue.JobQueueRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.log_change(request, entry, f"{label}.")
            self.message_user(request, f"{entry.label} {done}.", messages.SUCCESS)

    @admin.action(description="Run Now")
    def run_now_selected(self, request: HttpRequest, queryset: QuerySet):
        for entry in queryset:
            self._apply(request, entry, "run-now")

    @admin.action(description="Set On Hold")
    def set_on_hold_selected(self, request: HttpRequest, queryset: QuerySet):
        for entry in queryset:
            self._apply(request, entry, "on-hold")

    @admin.action(description="Set Status to Ready")
    def set_ready_selected(self, request: HttpRequest, queryset: QuerySet):
        for entry in queryset:
            self._apply(request, entry, "ready")


@admin.register(JobQueueLogEntry)
class JobQueueLogEntryAdmin(OwnedByUserAdmin):
    """Business Central's Job Queue Log Entries (474): one row per pass, newest first, read-only,
    each with its users' outcomes."""

    owner_field = "entry__user"
    list_display = (
        "started_at",
        "ended_at",
        "entry",
        "status",
        "users_total",
        "users_synced",
        "users_skipped",
        "users_failed",
    )
    list_filter = ("status",)
    list_select_related = ("entry",)
    fields = (
        "entry",
        "started_at",
        "ended_at",
        "status",
        "users_total",
        "users_synced",
        "users_skipped",
        "users_failed",
        "error_message",
        "user_outcomes",
    )
    readonly_fields = fields

    def is_owner(self, request: HttpRequest, obj) -> bool:
        return request.user.is_superuser or obj.entry.user_id == request.user.pk

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields  # everything already: the owner is the entry's user

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Users")
    def user_outcomes(self, obj: JobQueueLogEntry) -> str:
        users = PassUser.objects.filter(log_entry=obj).select_related("user").order_by("user__username")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((part.user, part.get_outcome_display() or "Not finished", part.detail) for part in users),
        )
        return format_html(
            '<table class="job-queue-log-users"><thead><tr><th>User</th><th>Outcome</th><th>Detail</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )
