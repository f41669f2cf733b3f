"""Admin pages. Thin: views and actions call services, then tell the user what happened.

A user reaches only their own User Card, setups, runs, log and job queue entries; superusers see
everyone's.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import UserCard

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
