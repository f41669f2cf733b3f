"""Admin pages. Thin: views and actions call services, then tell the user what happened.

A user reaches only their own User Card, setups, runs, log and job queue entries; superusers see
everyone's.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from .forms import ContactFilterForm
from .models import (
    ActivityLog,
    CodeunitId,
    ContactSyncSetup,
    ExchangeSyncSetup,
    JobQueueEntry,
    RunStatus,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from .services import contact_sync, job_queue
from .sync.filters import describe_filter

User = get_user_model()


class OwnedByUserAdmin(admin.ModelAdmin):
    """Rows belong to `user`: others' rows are invisible (their ids answer "doesn't exist")."""

    owner_field = "user"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{self.owner_field: request.user})

    def is_owner(self, request: HttpRequest, obj) -> bool:
        return request.user.is_superuser or getattr(obj, f"{self.owner_field}_id") == request.user.pk

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request) and (obj is None or self.is_owner(request, obj))

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser and self.owner_field not in readonly:
            readonly += (self.owner_field,)
        return readonly


class UserCardInline(admin.StackedInline):
    model = UserCard
    can_delete = False
    verbose_name = "Microsoft 365"
    verbose_name_plural = "Microsoft 365"
    fields = ("microsoft_365_email",)


admin.site.unregister(User)


@admin.register(User)
class BcsyncUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, UserCardInline]
    list_display = (*UserAdmin.list_display, "microsoft_365_email")
    list_select_related = ("user_card",)

    @admin.display(description="Microsoft 365 email", ordering="user_card__microsoft_365_email")
    def microsoft_365_email(self, obj) -> str:
        card = getattr(obj, "user_card", None)
        return card.microsoft_365_email if card else ""


@admin.register(UserCard)
class UserCardAdmin(OwnedByUserAdmin):
    list_display = ("user", "microsoft_365_email")
    search_fields = ("user__username", "microsoft_365_email")
    fields = ("user", "microsoft_365_email")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # A salesperson has one card: open it, creating it on first visit.
        if not request.user.is_superuser:
            card, _ = UserCard.objects.get_or_create(user=request.user)
            return redirect("admin:exchange_sync_usercard_change", card.pk)
        return super().changelist_view(request, extra_context)


def _changeable_object(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The object behind a custom view, if this user may see and change it."""
    obj = model_admin.get_object(request, object_id)
    if obj is None or not model_admin.has_change_permission(request, obj):
        raise PermissionDenied
    return obj


def _post_only_object_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The object behind a state-changing button: POST only, visible to the user, changeable."""
    if request.method != "POST":
        raise PermissionDenied("This button only works as a form submission.")
    return _changeable_object(model_admin, request, object_id)


@admin.register(ExchangeSyncSetup)
class ExchangeSyncSetupAdmin(OwnedByUserAdmin):
    list_display = ("user", "microsoft_365_email", "connection_status", "last_validated_at")
    list_filter = ("connection_status",)
    fields = (
        "user",
        "microsoft_365_email",
        "connection_status",
        "last_validated_at",
        "last_validation_message",
    )
    readonly_fields = fields
    actions = ["validate_connections"]

    @admin.display(description="Microsoft 365 email")
    def microsoft_365_email(self, obj: ExchangeSyncSetup) -> str:
        card = UserCard.objects.filter(user_id=obj.user_id).first()
        return (
            card.microsoft_365_email if card and card.microsoft_365_email else "— (set it on the User Card)"
        )

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # A salesperson has one setup: open it, creating it on first visit as Business Central does.
        if not request.user.is_superuser:
            exchange, _ = contact_sync.setups_for(user=request.user)
            return redirect("admin:exchange_sync_exchangesyncsetup_change", exchange.pk)
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/validate/",
                view(self.validate_view),
                name="exchange_sync_exchangesyncsetup_validate",
            ),
            *super().get_urls(),
        ]

    def validate_view(self, request: HttpRequest, object_id: str):
        setup = _post_only_object_view(self, request, object_id)
        _message_connection_check(self, request, contact_sync.validate_exchange_connection(user=setup.user))
        return redirect("admin:exchange_sync_exchangesyncsetup_change", setup.pk)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        setup = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if setup is not None:
            _, contact_setup = contact_sync.setups_for(user=setup.user)
            extra["contact_sync_setup_url"] = reverse(
                "admin:exchange_sync_contactsyncsetup_change", args=[contact_setup.pk]
            )
        return super().change_view(request, object_id, form_url, extra)

    @admin.action(description="Validate Exchange Connection")
    def validate_connections(self, request: HttpRequest, queryset: QuerySet):
        for setup in queryset.select_related("user"):
            _message_connection_check(
                self, request, contact_sync.validate_exchange_connection(user=setup.user)
            )


def _message_connection_check(model_admin: admin.ModelAdmin, request: HttpRequest, check) -> None:
    model_admin.message_user(request, check.message, messages.SUCCESS if check.ok else messages.ERROR)


SYNC_BUTTONS = {
    "sync": (SyncMode.SYNC, "Sync with Microsoft 365"),
    "full-sync": (SyncMode.FULL, "Full Sync with Microsoft 365"),
    "preview": (SyncMode.PREVIEW, "Preview"),
}


class BackgroundSyncButtonMixin:
    """Enable/Disable Background Synchronization on the Contact Sync Setup page: a POST button, and
    Business Central's notice when BACKGROUND_SYNC_POLICY=legacy."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/background-sync/",
                self.admin_site.admin_view(self.background_sync_view),
                name="exchange_sync_contactsyncsetup_background_sync",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["background_sync"] = {
                "enabled": ExchangeSyncSetup.objects.filter(user_id=obj.user_id, enabled=True).exists(),
                "can_enable": job_queue.can_enable_background_sync(user=obj.user),
                "notice": job_queue.BACKGROUND_SYNC_NOTICE
                if job_queue.background_sync_policy() == "legacy"
                else "",
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def background_sync_view(self, request: HttpRequest, object_id: str):
        setup = _post_only_object_view(self, request, object_id)
        enable = request.POST.get("enabled") == "1"
        try:
            job_queue.set_background_sync(user=setup.user, enabled=enable)
        except job_queue.BackgroundSyncLocked as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                "Background synchronization is on: the Job Queue Entry for Codeunit 6700 syncs your contacts."
                if enable
                else "Background synchronization is off.",
                messages.SUCCESS,
            )
        return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)


@admin.register(ContactSyncSetup)
class ContactSyncSetupAdmin(BackgroundSyncButtonMixin, OwnedByUserAdmin):
    list_display = (
        "user",
        "folder_name",
        "filter_description",
        "last_sync_at",
        "background_sync",
        "active_run",
    )
    list_select_related = ("user", "active_run")
    fieldsets = (
        (None, {"fields": ("user", "folder_name", "filter_description", "out_of_scope_policy")}),
        ("Synchronization", {"fields": ("last_sync_at", "watermark", "background_sync", "active_run")}),
    )
    readonly_fields = (
        "user",
        "filter_description",
        "last_sync_at",
        "watermark",
        "background_sync",
        "active_run",
    )
    actions = ["validate_selected", "sync_selected", "full_sync_selected", "preview_selected"]

    @admin.display(description="Sync filter")
    def filter_description(self, obj: ContactSyncSetup) -> str:
        return describe_filter(filters=obj.contact_filter)

    @admin.display(description="Enable Background Synchronization", boolean=True)
    def background_sync(self, obj: ContactSyncSetup) -> bool:
        return ExchangeSyncSetup.objects.filter(user_id=obj.user_id, enabled=True).exists()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if not request.user.is_superuser:
            _, setup = contact_sync.setups_for(user=request.user)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view
        name = "exchange_sync_contactsyncsetup"
        return [
            path("<path:object_id>/run/<slug:button>/", view(self.run_view), name=f"{name}_run"),
            path("<path:object_id>/validate/", view(self.validate_view), name=f"{name}_validate"),
            path("<path:object_id>/filter/", view(self.filter_view), name=f"{name}_filter"),
            path("<path:object_id>/delete-log/", view(self.delete_log_view), name=f"{name}_delete_log"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra = {"sync_buttons": [(slug, label) for slug, (_, label) in SYNC_BUTTONS.items()]}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def run_view(self, request: HttpRequest, object_id: str, button: str):
        setup = _post_only_object_view(self, request, object_id)
        if button not in SYNC_BUTTONS:
            raise Http404("No such sync")
        mode, label = SYNC_BUTTONS[button]
        try:
            run = contact_sync.request_contact_sync(
                user=setup.user,
                mode=mode,
                trigger=SyncTrigger.BUTTON,
                allow_mass_delete=request.POST.get("allow_mass_delete") == "1",
            )
        except (contact_sync.SyncRefused, contact_sync.SetupIncomplete) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        self.message_user(
            request, f"{label} is queued. This page follows it until it ends.", messages.SUCCESS
        )
        return redirect("admin:exchange_sync_syncrun_change", run.pk)

    def validate_view(self, request: HttpRequest, object_id: str):
        setup = _post_only_object_view(self, request, object_id)
        _message_connection_check(self, request, contact_sync.validate_exchange_connection(user=setup.user))
        return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)

    def _setup_page(self, request: HttpRequest, setup: ContactSyncSetup, template: str, title: str, **extra):
        """A page of its own for one setup (Set Sync Filter, Delete Activity Log)."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": setup,
            "title": title,
        }
        return TemplateResponse(
            request, f"admin/exchange_sync/contactsyncsetup/{template}", {**context, **extra}
        )

    def filter_view(self, request: HttpRequest, object_id: str):
        setup = _changeable_object(self, request, object_id)
        form = ContactFilterForm(request.POST or None, initial=setup.contact_filter)
        if request.method == "POST" and form.is_valid():
            described = contact_sync.set_sync_filter(user=setup.user, filters=form.cleaned_data)
            self.message_user(request, f"Sync filter saved: {described}.", messages.SUCCESS)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        return self._setup_page(request, setup, "set_filter.html", "Set Sync Filter", form=form)

    def delete_log_view(self, request: HttpRequest, object_id: str):
        setup = _changeable_object(self, request, object_id)
        count = ActivityLog.objects.filter(user=setup.user).count()
        if request.method == "POST" and request.POST.get("post") == "yes":
            deleted = contact_sync.delete_activity_log(user=setup.user)
            self.message_user(request, f"Deleted {deleted} activity log entries.", messages.SUCCESS)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        return self._setup_page(request, setup, "delete_log.html", "Delete Activity Log", count=count)

    def _queue_runs(self, request: HttpRequest, queryset: QuerySet, mode: str) -> None:
        queued, refused = 0, []
        for setup in queryset.select_related("user"):
            try:
                contact_sync.request_contact_sync(
                    user=setup.user, mode=mode, trigger=SyncTrigger.ADMIN_ACTION
                )
                queued += 1
            except (contact_sync.SyncRefused, contact_sync.SetupIncomplete) as exc:
                refused.append(str(exc))
        if queued:
            self.message_user(request, f"Queued {queued} run(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Validate Exchange Connection")
    def validate_selected(self, request: HttpRequest, queryset: QuerySet):
        for setup in queryset.select_related("user"):
            _message_connection_check(
                self, request, contact_sync.validate_exchange_connection(user=setup.user)
            )

    @admin.action(description="Sync with Microsoft 365")
    def sync_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.SYNC)

    @admin.action(description="Full Sync with Microsoft 365")
    def full_sync_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.FULL)

    @admin.action(description="Preview")
    def preview_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.PREVIEW)


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
        "created",
        "updated",
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
    fieldsets = (
        (None, {"fields": ("user", "mode", "trigger", "status", "error", "summary_line")}),
        ("Timing", {"fields": ("queued_at", "started_at", "heartbeat_at", "finished_at", "duration")}),
        (
            "Outlook (Business Central → Outlook)",
            {"fields": ("created", "updated", "linked", "recreated", "deleted")},
        ),
        ("Business Central (Outlook → Business Central)", {"fields": ("imported", "bc_updated")}),
        (
            "Other",
            {"fields": ("skipped", "failed", "graph_requests", "allow_mass_delete", "job_queue_entry")},
        ),
    )
    inlines = [ActivityLogInline]

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
    list_display = ("created_at", "outcome", "direction", "contact_no", "message", "run_link")
    list_filter = ("outcome", "direction", "action")
    actions = None
    search_fields = ("contact_no", "email", "message")
    list_select_related = ("run",)
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
        "next_run_at",
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
        ("Runs", {"fields": ("last_run_at", "next_run_at", "last_error", "sync_runs")}),
    )
    readonly_fields = ("object_caption", "status", "last_run_at", "next_run_at", "last_error", "sync_runs")
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
        entry = _post_only_object_view(self, request, object_id)
        if button not in JOB_QUEUE_BUTTONS:
            raise Http404("No such action")
        self._apply(request, entry, button)
        return redirect("admin:exchange_sync_jobqueueentry_change", entry.pk)

    def _apply(self, request: HttpRequest, entry: JobQueueEntry, button: str) -> None:
        _, service, done = JOB_QUEUE_BUTTONS[button]
        try:
            service(entry=entry)
        except job_queue.JobQueueRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
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
