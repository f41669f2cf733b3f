"""Live updates: the Microsoft Graph subscription on each user's sync folder."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REMOVED = "removed", "Removed by Microsoft 365"
    FAILED = "failed", "Failed"


class GraphSubscription(models.Model):
    """A user's change-notification subscription on their sync folder's contacts. The row stays
    when Graph's subscription goes (status and last error say why); graph_id is the current one."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="graph_subscription"
    )
    graph_id = models.CharField("Subscription id", max_length=128, blank=True, db_index=True)
    resource = models.CharField(max_length=600, blank=True)
    expires_at = models.DateTimeField("Expires", null=True, blank=True)
    # Graph echoes it in every notification: the proof a notification is Graph's. Never shown.
    client_state = models.CharField(max_length=128, blank=True, editable=False)
    status = models.CharField(
        max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    last_notification_at = models.DateTimeField("Last notification", null=True, blank=True)

    class Meta:
        verbose_name = "Graph subscription"

    def __str__(self) -> str:
        return f"Graph subscription of {self.user}"


class UnconfirmedChange(models.Model):
    """An Outlook change notified while the user's run was writing: perhaps the echo of that run's
    own write, whose change key it had not stored yet. The run's end decides (contact_sync)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    graph_id = models.CharField(max_length=512)
    change_key = models.CharField(max_length=256, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Unconfirmed Outlook change of {self.graph_id[:16]}..."
