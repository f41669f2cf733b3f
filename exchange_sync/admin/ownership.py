"""Who may see and change what on the admin pages.

The sync pages are for users with the run_contact_sync permission (the Salesperson group gives
it). Each reaches only their own User Card, setups, runs, log and job queue entries; superusers see
everyone's.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.shortcuts import redirect


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
        user = request.user
        return user.is_active and user.is_staff and user.has_perm("exchange_sync.run_contact_sync")

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

    def get_list_filter(self, request: HttpRequest):
        # Administrators see everyone's rows and can narrow them to one user; for anyone else this
        # filter would list every user.
        list_filter = tuple(super().get_list_filter(request))
        if request.user.is_superuser:
            list_filter += (self.owner_field,)
        return list_filter

    def own_object(self, request: HttpRequest) -> Model | None:
        """The one row a salesperson has on this page, or None where they have a list."""
        return None

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # A salesperson with one row (a User Card, a setup) gets that row's card, not a list of one.
        if not request.user.is_superuser and self.has_view_or_change_permission(request):
            obj = self.own_object(request)
            if obj is not None:
                return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", obj.pk)
        return super().changelist_view(request, extra_context)


def changeable_object(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The object behind a custom view, if this user may see and change it."""
    obj = model_admin.get_object(request, object_id)
    if obj is None or not model_admin.has_change_permission(request, obj):
        raise PermissionDenied
    return obj


def post_only_object(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The object behind a state-changing button: POST only, visible to the user, changeable."""
    if request.method != "POST":
        raise PermissionDenied("This button only works as a form submission.")
    return changeable_object(model_admin, request, object_id)
