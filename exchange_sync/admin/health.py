"""The Sync health page for administrators: one row per user, a "needs attention" filter and sort,
and two small charts drawn as SVG on the server. It sits in the Microsoft 365 sync app list as
"Sync health"; salespeople see their own row on their Contact Sync Setup page instead."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from ..models import RunStatus, SyncHealth
from ..services import health

ROWS_PER_PAGE = 100
# ?o= value -> sort key over HealthRow. The default, "attention", puts who needs it on top.
SORTS = {
    "attention": lambda r: (not r.needs_attention, -r.failures_in_a_row, r.user.username),
    "user": lambda r: r.user.username,
    "last_run": lambda r: -(r.last_run.queued_at.timestamp() if r.last_run else 0),
    "failures": lambda r: (-r.failures_in_a_row, r.user.username),
}
STATUS_COLOURS = {
    RunStatus.SUCCEEDED: "#2e7d32",
    RunStatus.FAILED: "#c62828",
    RunStatus.RUNNING: "#1565c0",
    RunStatus.QUEUED: "#9e9e9e",
}
CHART_HEIGHT = 80


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    width: int
    height: float
    colour: str
    title: str


def day_bars(days: list[health.DayOfRuns], *, width: int = 22, gap: int = 4) -> list[Bar]:
    """Stacked bars, one per day, each status a block of its colour, scaled to the busiest day."""
    tallest = max((day.total for day in days), default=0) or 1
    bars = []
    for i, day in enumerate(days):
        top = float(CHART_HEIGHT)
        for status, colour in STATUS_COLOURS.items():
            count = day.by_status.get(status, 0)
            if not count:
                continue
            height = CHART_HEIGHT * count / tallest
            top -= height
            label = RunStatus(status).label.lower()
            bars.append(
                Bar(i * (width + gap), top, width, height, colour, f"{day.day:%a %d %b}: {count} {label}")
            )
    return bars


def duration_bars(runs, *, width: int = 8, gap: int = 2) -> tuple[list[Bar], float]:
    """One bar per run, its height its duration, scaled to the longest; and that longest, in seconds."""
    seconds = [health.run_seconds(run) or 0.0 for run in runs]
    longest = max(seconds, default=0.0)
    bars = []
    for i, (run, took) in enumerate(zip(runs, seconds, strict=True)):
        height = max(CHART_HEIGHT * took / (longest or 1), 1.0)
        bars.append(
            Bar(
                i * (width + gap),
                CHART_HEIGHT - height,
                width,
                height,
                STATUS_COLOURS.get(run.status, "#9e9e9e"),
                f"#{run.pk} {run.user} {run.get_mode_display()}: {took:.1f} s, "
                f"{run.get_status_display().lower()}",
            )
        )
    return bars, longest


@admin.register(SyncHealth)
class SyncHealthAdmin(admin.ModelAdmin):
    """Administrators only: the page shows every user's mailbox and errors."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).none()  # no object of its own to open

    def get_urls(self):
        return [
            path(
                "",
                self.admin_site.admin_view(self.changelist_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_changelist",
            )
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        attention_only = request.GET.get("attention") == "1"
        sort = request.GET.get("o") if request.GET.get("o") in SORTS else "attention"
        rows = health.health_rows()
        needing = sum(row.needs_attention for row in rows)
        if attention_only:
            rows = [row for row in rows if row.needs_attention]
        rows.sort(key=SORTS[sort])
        page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("p"))
        days = health.runs_per_day()
        durations, longest = duration_bars(health.recent_durations())

        def link(**changes) -> str:
            query = {"o": sort, **({"attention": "1"} if attention_only else {}), **changes}
            return "?" + urlencode({key: value for key, value in query.items() if value})

        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Sync health",
            "page": page,
            "needing": needing,
            "attention_only": attention_only,
            "sort": sort,
            "sort_urls": {key: link(o=key, p="") for key in SORTS},
            "all_link": link(attention="", p=""),
            "attention_link": link(attention="1", p=""),
            "page_links": {
                "previous": link(p=page.previous_page_number()) if page.has_previous() else "",
                "next": link(p=page.next_page_number()) if page.has_next() else "",
            },
            "day_bars": day_bars(days),
            "days": days,
            "day_chart_width": len(days) * 26,
            "runs_in_chart": sum(day.total for day in days),
            "duration_bars": durations,
            "duration_chart_width": max(len(durations) * 10, 10),
            "longest_seconds": longest,
            "legend": [(RunStatus(status).label, colour) for status, colour in STATUS_COLOURS.items()],
            "runs_url": reverse("admin:exchange_sync_syncrun_changelist"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/exchange_sync/synchealth/health.html", context)
