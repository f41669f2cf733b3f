"""A user's setup pages: the User (with its Microsoft 365 inline), the User Card, the Exchange Sync
Setup and the Contact Sync Setup, with their buttons. Thin: views and actions call services, then
tell the user what happened."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..forms import ContactFilterForm
from ..graph import GraphError
from ..models import (
    ActivityLog,
    ContactSyncSetup,
    ExchangeSyncSetup,
    SyncMode,
    SyncRun,
    SyncTrigger,
    UserCard,
)
from ..services import contact_sync, health, job_queue, live_updates, m365_connections
from ..sync.filters import describe_filter
from .ownership import OwnedByUserAdmin, changeable_object, post_only_object

User = get_user_model()


def may_change_microsoft_365_email(request: HttpRequest) -> bool:
    """The email decides whose mailbox a user syncs, and the app can reach every mailbox of the
    tenant: only an administrator with this permission sets it."""
    return request.user.has_perm("exchange_sync.change_microsoft_365_email")


class UserCardInline(admin.StackedInline):
    model = UserCard
    can_delete = False
    verbose_name = "Microsoft 365"
    verbose_name_plural = "Microsoft 365"
    fields = ("microsoft_365_email",)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return may_change_microsoft_365_email(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return may_change_microsoft_365_email(request)


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

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return may_change_microsoft_365_email(request) and super().has_change_permission(request, obj)

    def own_object(self, request: HttpRequest) -> UserCard:
        card, _ = UserCard.objects.get_or_create(user=request.user)
        return card


class SetupAdmin(OwnedByUserAdmin):
    """What both setup pages have: Validate Exchange Connection, as a button and as an action, and
    a notice when the user has no Microsoft 365 email, before any button is pressed. A
    salesperson's setups are created on their first visit, as Business Central does."""

    actions = ["validate_connections"]

    def get_urls(self):
        return [
            path(
                "<path:object_id>/validate/",
                self.admin_site.admin_view(self.validate_connection_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_validate",
            ),
            *super().get_urls(),
        ]

    def validate_connection_view(self, request: HttpRequest, object_id: str):
        setup = post_only_object(self, request, object_id)
        self._check_connection(request, setup)
        return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", setup.pk)

    @admin.action(description="Validate Exchange Connection")
    def validate_connections(self, request: HttpRequest, queryset: QuerySet):
        for setup in queryset.select_related("user"):
            self._check_connection(request, setup)

    def _check_connection(self, request: HttpRequest, setup) -> None:
        check = contact_sync.validate_exchange_connection(user=setup.user)
        self.log_change(request, setup, f"Validate Exchange Connection: {check.message}")
        self.message_user(request, check.message, messages.SUCCESS if check.ok else messages.ERROR)

    def render_change_form(
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            try:
                contact_sync.mailbox_of(user=obj.user)
            except contact_sync.SetupIncomplete as exc:
                context["setup_incomplete"] = str(exc)
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(ExchangeSyncSetup)
class ExchangeSyncSetupAdmin(SetupAdmin):
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

    @admin.display(description="Microsoft 365 email")
    def microsoft_365_email(self, obj: ExchangeSyncSetup) -> str:
        card = UserCard.objects.filter(user_id=obj.user_id).first()
        return (
            card.microsoft_365_email if card and card.microsoft_365_email else "— (set it on the User Card)"
        )

    def own_object(self, request: HttpRequest) -> ExchangeSyncSetup:
        exchange, _ = contact_sync.setups_for(user=request.user)
        return exchange

    def get_list_display(self, request: HttpRequest):
        # Administrators see who must reconnect at a glance.
        columns = super().get_list_display(request)
        return (*columns, "m365_connection") if m365_connections.delegated() else columns

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("user__m365_connection")

    @admin.display(description="Microsoft 365 connection")
    def m365_connection(self, obj: ExchangeSyncSetup) -> str:
        connection = getattr(obj.user, "m365_connection", None)
        return connection.get_status_display() if connection else "Not connected"

    def get_urls(self):
        # Connect, its callback and Disconnect act on the requester's own connection only: no id in
        # the URL, so nobody can name another user's.
        view = self.admin_site.admin_view
        name = "exchange_sync_exchangesyncsetup"
        return [
            path("microsoft-365/connect/", view(self.connect_view), name=f"{name}_m365_connect"),
            path("microsoft-365/callback/", view(self.callback_view), name=f"{name}_m365_callback"),
            path("microsoft-365/disconnect/", view(self.disconnect_view), name=f"{name}_m365_disconnect"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        setup = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if setup is not None:
            _, contact_setup = contact_sync.setups_for(user=setup.user)
            extra["contact_sync_setup_url"] = reverse(
                "admin:exchange_sync_contactsyncsetup_change", args=[contact_setup.pk]
            )
            if m365_connections.delegated():
                extra["m365"] = {
                    "connection": m365_connections.connection_of(user=setup.user),
                    "own": setup.user_id == request.user.pk,
                }
        return super().change_view(request, object_id, form_url, extra)

    def _own_page(self, request: HttpRequest) -> HttpResponseRedirect:
        return redirect("admin:exchange_sync_exchangesyncsetup_change", self.own_object(request).pk)

    def _check_may_connect(self, request: HttpRequest, *, post: bool) -> None:
        if post and request.method != "POST":
            raise PermissionDenied("This button only works as a form submission.")
        if not (m365_connections.delegated() and self.has_module_permission(request)):
            raise PermissionDenied

    def connect_view(self, request: HttpRequest):
        """Connect (or Reconnect) to Microsoft 365: MSAL's flow goes into the session, the browser
        to Microsoft's sign-in page, which comes back to `callback_view`."""
        self._check_may_connect(request, post=True)
        redirect_uri = settings.M365_REDIRECT_URI or request.build_absolute_uri(
            reverse("admin:exchange_sync_exchangesyncsetup_m365_callback")
        )
        try:
            flow = m365_connections.start_connect(user=request.user, redirect_uri=redirect_uri)
        except (GraphError, ImproperlyConfigured) as exc:
            self.message_user(request, f"Cannot connect to Microsoft 365: {exc}", messages.ERROR)
            return self._own_page(request)
        request.session[m365_connections.SESSION_FLOW_KEY] = flow
        return HttpResponseRedirect(flow["auth_uri"])

    def callback_view(self, request: HttpRequest):
        self._check_may_connect(request, post=False)
        # Popped first: an answer is good once, and a reload must not redeem the code again.
        flow = request.session.pop(m365_connections.SESSION_FLOW_KEY, None)
        try:
            connection = m365_connections.finish_connect(
                user=request.user, flow=flow, answer=request.GET.dict()
            )
        except GraphError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._own_page(request)
        setup = self.own_object(request)
        self.log_change(request, setup, f"Connect to Microsoft 365: connected as {connection.account}.")
        self.message_user(request, f"Connected to Microsoft 365 as {connection.account}.", messages.SUCCESS)
        return self._own_page(request)

    def disconnect_view(self, request: HttpRequest):
        self._check_may_connect(request, post=True)
        if m365_connections.disconnect(user=request.user):
            self.log_change(request, self.own_object(request), "Disconnect from Microsoft 365.")
            self.message_user(
                request, "Disconnected from Microsoft 365: the stored sign-in was deleted.", messages.SUCCESS
            )
        else:
            self.message_user(request, "You were not connected to Microsoft 365.", messages.WARNING)
        return self._own_page(request)


class LiveUpdatesFilter(admin.SimpleListFilter):
    """Which users Microsoft 365 notifies, and which it does not (no working subscription)."""

    title = "live updates"
    parameter_name = "live"

    def lookups(self, request: HttpRequest, model_admin):
        return [("on", "On"), ("none", "None")]

    def queryset(self, request: HttpRequest, queryset: QuerySet):
        if self.value() == "none":
            return queryset.filter(live_updates.users_without_live_updates())
        if self.value() == "on":
            return queryset.exclude(live_updates.users_without_live_updates())
        return queryset


# The sync buttons of the Contact Sync Setup page: URL slug -> mode (the mode's label is the button's).
SYNC_BUTTONS = {
    "sync": SyncMode.SYNC,
    "full-sync": SyncMode.FULL,
    "preview": SyncMode.PREVIEW,
}


@admin.register(ContactSyncSetup)
class ContactSyncSetupAdmin(SetupAdmin):
    """The Contact Sync Setup page: the sync buttons, Set Sync Filter, the activity log, and
    Enable/Disable Background Synchronization (with Business Central's notice when
    BACKGROUND_SYNC_POLICY=legacy)."""

    list_display = (
        "user",
        "folder_name",
        "filter_description",
        "last_sync_at",
        "background_sync",
        "live_updates",
        "active_run",
    )
    list_select_related = ("user", "active_run")
    list_filter = (LiveUpdatesFilter,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "user",
                    "folder_name",
                    "existing_folder_policy",
                    "filter_description",
                    "out_of_scope_policy",
                )
            },
        ),
        (
            "Synchronization",
            {"fields": ("last_sync_at", "watermark", "background_sync", "background_backoff", "active_run")},
        ),
    )
    readonly_fields = (
        "user",
        "filter_description",
        "last_sync_at",
        "watermark",
        "background_sync",
        "background_backoff",
        "active_run",
    )
    actions = ["validate_connections", "sync_selected", "full_sync_selected", "preview_selected"]

    @admin.display(description="Sync filter")
    def filter_description(self, obj: ContactSyncSetup) -> str:
        return describe_filter(filters=obj.contact_filter)

    @admin.display(description="Enable Background Synchronization", boolean=True)
    def background_sync(self, obj: ContactSyncSetup) -> bool:
        return ExchangeSyncSetup.objects.filter(user_id=obj.user_id, enabled=True).exists()

    @admin.display(description="Background back-off")
    def background_backoff(self, obj: ContactSyncSetup) -> str:
        exchange = ExchangeSyncSetup.objects.filter(user_id=obj.user_id).first()
        return (
            exchange and job_queue.describe_backoff(setup=exchange)
        ) or "None: background passes sync this user."

    @admin.display(description="Live updates", boolean=True)
    def live_updates(self, obj: ContactSyncSetup) -> bool:
        return live_updates.status_of(user=obj.user)["on"]

    def own_object(self, request: HttpRequest) -> ContactSyncSetup:
        _, setup = contact_sync.setups_for(user=request.user)
        return setup

    def get_urls(self):
        view = self.admin_site.admin_view
        name = "exchange_sync_contactsyncsetup"
        return [
            path("<path:object_id>/run/<slug:button>/", view(self.run_view), name=f"{name}_run"),
            path("<path:object_id>/filter/", view(self.filter_view), name=f"{name}_filter"),
            path("<path:object_id>/delete-log/", view(self.delete_log_view), name=f"{name}_delete_log"),
            path(
                "<path:object_id>/background-sync/",
                view(self.background_sync_view),
                name=f"{name}_background_sync",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra = {"sync_buttons": [(slug, mode.label) for slug, mode in SYNC_BUTTONS.items()]}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def render_change_form(
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ):
        if obj is not None:
            context["background_sync"] = {
                "enabled": self.background_sync(obj),
                "can_enable": job_queue.can_enable_background_sync(user=obj.user),
                "notice": job_queue.BACKGROUND_SYNC_NOTICE
                if job_queue.background_sync_policy() == "legacy"
                else "",
            }
            context["health_rows"] = [health.health_row(user=obj.user)]
            context["live_updates"] = live_updates.status_of(user=obj.user)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: ContactSyncSetup, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "folder_name" in form.changed_data:
            self.message_user(
                request,
                "Folder name changed: " + contact_sync.next_folder_step(user=obj.user),
                messages.WARNING,
            )

    def run_view(self, request: HttpRequest, object_id: str, button: str):
        setup = post_only_object(self, request, object_id)
        if button not in SYNC_BUTTONS:
            raise Http404("No such sync")
        mode = SYNC_BUTTONS[button]
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
        self._log_queued(request, setup, run)
        self.message_user(
            request, f"{mode.label} is queued. This page follows it until it ends.", messages.SUCCESS
        )
        return redirect("admin:exchange_sync_syncrun_change", run.pk)

    def _log_queued(self, request: HttpRequest, setup: ContactSyncSetup, run: SyncRun) -> None:
        self.log_change(request, setup, f"{run.get_mode_display()}: sync run #{run.pk} queued.")

    def background_sync_view(self, request: HttpRequest, object_id: str):
        setup = post_only_object(self, request, object_id)
        enable = request.POST.get("enabled") == "1"
        try:
            job_queue.set_background_sync(user=setup.user, enabled=enable)
        except job_queue.BackgroundSyncRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.log_change(
                request, setup, f"{'Enable' if enable else 'Disable'} Background Synchronization."
            )
            self.message_user(
                request,
                "Background synchronization is on: the Job Queue Entry for Codeunit 6700 syncs your contacts."
                if enable
                else "Background synchronization is off.",
                messages.SUCCESS,
            )
        return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        setup = self.get_object(request, object_id)
        if setup is None:
            return super().delete_view(request, object_id, extra_context)
        # The confirmation page says what happens to the links and the Outlook copies.
        what_happens = {
            "links": setup.links.count(),
            "folder_name": setup.folder_name,
            "mailbox": setup.folder_mailbox,
        }
        try:
            return super().delete_view(request, object_id, {**(extra_context or {}), **what_happens})
        except contact_sync.SyncRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)

    def delete_model(self, request: HttpRequest, obj: ContactSyncSetup) -> None:
        contact_sync.delete_contact_sync_setup(setup=obj)

    def get_actions(self, request: HttpRequest):
        # A setup is deleted from its own page, whose confirmation says what happens to its links.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

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
        setup = changeable_object(self, request, object_id)
        form = ContactFilterForm(request.POST or None, initial=setup.contact_filter)
        if request.method == "POST" and form.is_valid():
            described = contact_sync.set_sync_filter(user=setup.user, filters=form.cleaned_data)
            self.log_change(request, setup, f"Set Sync Filter: {described}.")
            self.message_user(request, f"Sync filter saved: {described}.", messages.SUCCESS)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        return self._setup_page(request, setup, "set_filter.html", "Set Sync Filter", form=form)

    def delete_log_view(self, request: HttpRequest, object_id: str):
        setup = changeable_object(self, request, object_id)
        count = ActivityLog.objects.filter(user=setup.user).count()
        if request.method == "POST" and request.POST.get("post") == "yes":
            deleted = contact_sync.delete_activity_log(user=setup.user)
            self.log_change(request, setup, f"Delete Activity Log: {deleted} entries deleted.")
            self.message_user(request, f"Deleted {deleted} activity log entries.", messages.SUCCESS)
            return redirect("admin:exchange_sync_contactsyncsetup_change", setup.pk)
        return self._setup_page(request, setup, "delete_log.html", "Delete Activity Log", count=count)

    def _queue_runs(self, request: HttpRequest, queryset: QuerySet, mode: str) -> None:
        queued, refused = 0, []
        for setup in queryset.select_related("user"):
            try:
                run = contact_sync.request_contact_sync(
                    user=setup.user, mode=mode, trigger=SyncTrigger.ADMIN_ACTION
                )
                self._log_queued(request, setup, run)
                queued += 1
            except (contact_sync.SyncRefused, contact_sync.SetupIncomplete) as exc:
                refused.append(str(exc))
        if queued:
            self.message_user(request, f"Queued {queued} run(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Sync with Microsoft 365")
    def sync_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.SYNC)

    @admin.action(description="Full Sync with Microsoft 365")
    def full_sync_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.FULL)

    @admin.action(description="Preview")
    def preview_selected(self, request: HttpRequest, queryset: QuerySet):
        self._queue_runs(request, queryset, SyncMode.PREVIEW)
