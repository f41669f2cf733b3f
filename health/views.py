from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from health_check.views import HealthCheckView


@method_decorator(login_not_required, name="dispatch")
class HealthView(HealthCheckView):
    """200 "ok" or 503 "unavailable" to anyone, since a load balancer cannot sign in; which check
    failed, and why, only to superusers (staff here are salespeople, and the reasons name
    infrastructure)."""

    checks = (
        "health_check.checks.Database",
        "health.checks.QueueBroker",
        "health.checks.QueueWorker",
    )

    async def get(self, request, *args, **kwargs):
        detailed = await super().get(request, *args, **kwargs)  # runs the checks into self.results
        healthy = not any(result.error for result in self.results)
        if not (await request.auser()).is_superuser:
            return HttpResponse(
                "ok" if healthy else "unavailable",
                status=200 if healthy else 503,
                content_type="text/plain; charset=utf-8",
            )
        if not healthy and detailed.status_code == 500:
            detailed.status_code = 503  # what a load balancer expects; the library says 500
        return detailed
